"""Tester: evaluate a trained model on a split; overall metrics (JSON) and per-sample rows (CSV).

Batches stream through the model; metric state and the CSV writer are the only things that grow
with the split (the CSV on disk, not in memory).
"""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config.experiment import ExperimentConfig
from .errors import NeuroTrainError
from .metrics.classification import softmax
from .model_io import load_weights
from .models.registry import logits_of
from .trainer.checkpointing import last_good_checkpoint

PER_SAMPLE_COLUMNS = [
    "index",
    "label",
    "label_name",
    "prediction",
    "prediction_name",
    "confidence",
    "correct",
    "loss",
]


def resolve_checkpoint(run_dir: str | Path, which: str) -> Path:
    """``best`` (the final model folder, which holds the best checkpoint), ``last``, or a folder path."""
    run_dir = Path(run_dir)
    if which == "best":
        if (run_dir / "model").is_dir():
            return run_dir / "model"
        which = "last"
    if which == "last":
        last = last_good_checkpoint(run_dir)
        if last is None:
            raise NeuroTrainError(f"{run_dir}: no complete checkpoint found")
        return last
    path = Path(which)
    if not path.is_dir():
        raise NeuroTrainError(f"[testing] checkpoint {which!r}: folder not found")
    return path


class Tester:
    """Evaluate ``model`` on one split of the configured dataset and write the results to the run folder."""

    def __init__(self, config: ExperimentConfig, model: torch.nn.Module | None = None) -> None:
        self.config = config
        self.model = model

    def load(self, info) -> torch.nn.Module:
        from .models import get_model

        if self.model is None:
            folder = resolve_checkpoint(self.config.run_dir, self.config.testing.checkpoint)
            model = get_model(
                self.config.model.name,
                self.config.model,
                num_labels=info.num_labels,
                in_channels=info.channels,
            )
            self.model = load_weights(model, folder)
        return self.model.eval()

    @torch.no_grad()
    def run(self, split: str | None = None, out_dir: str | Path | None = None) -> dict[str, Any]:
        from .data.api import attach_transforms, load_splits
        from .data.loader import make_dataloader
        from .tasks.classification_trainer import classification_metrics

        split = split or self.config.testing.split
        dsd, info = load_splits(self.config)
        attach_transforms(dsd, self.config, info)
        if split not in dsd:
            raise NeuroTrainError(f"[testing] split {split!r}: the dataset has {', '.join(dsd)}")
        model = self.load(info)
        device = next(model.parameters()).device
        metrics = classification_metrics(self.config.training, info.num_labels)
        loader = make_dataloader(dsd[split], self.config.training.per_device_eval_batch_size)
        out_dir = Path(out_dir or self.config.run_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_file = out_dir / f"{split}_per_sample.csv" if self.config.testing.per_sample else None
        index, loss_sum = 0, 0.0
        with contextlib.ExitStack() as stack:
            writer = None
            if csv_file is not None:
                writer = csv.writer(stack.enter_context(open(csv_file, "w", newline="", encoding="utf-8")))
                writer.writerow(PER_SAMPLE_COLUMNS)
            for batch in loader:
                logits = logits_of(model(batch["pixel_values"].to(device))).float().cpu()
                labels = batch["labels"]
                losses = F.cross_entropy(logits, labels, reduction="none")
                loss_sum += float(losses.sum())
                if metrics is not None:
                    metrics.update(logits, labels)
                if writer is not None:
                    probs = softmax(logits.numpy())
                    preds = probs.argmax(axis=1)
                    for i, (y, p) in enumerate(zip(labels.tolist(), preds.tolist())):
                        writer.writerow(
                            [
                                index + i,
                                y,
                                info.label_names[y],
                                p,
                                info.label_names[p],
                                f"{probs[i, p]:.6f}",
                                int(y == p),
                                f"{float(losses[i]):.6f}",
                            ]
                        )
                index += len(labels)
        if index == 0:
            raise NeuroTrainError(f"[testing] split {split!r} is empty")
        result: dict[str, Any] = {"split": split, "num_samples": index, "loss": loss_sum / index}
        if metrics is not None:
            result.update(metrics.compute())
            self.confusion = metrics.family("classification").confusion
        (out_dir / f"{split}_metrics.json").write_text(
            json.dumps(
                {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in result.items()},
                indent=2,
            ),
            encoding="utf-8",
        )
        return result

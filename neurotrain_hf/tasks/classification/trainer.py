"""``ClassificationTrainer``: NeuroTrainer for image classification (``pixel_values`` -> logits -> label)."""

from __future__ import annotations

from typing import Any

import torch

from ...losses import LossOptions, build_loss
from ...metrics.classification import softmax
from ...metrics.registry import StreamingMetrics
from ...trainer.evaluation import EvalState
from ...trainer.neuro_trainer import NeuroTrainer
from .config import ClassificationConfig


def classification_metrics(args: ClassificationConfig, num_labels: int) -> StreamingMetrics | None:
    names = list(args.metrics or [])
    if not names:
        return None
    return StreamingMetrics(names, num_labels=num_labels, average=args.average, keep_scores="auc" in names)


class ClassificationTrainer(NeuroTrainer):
    """Registry loss (cross-entropy by default) on logits; evaluations keep their confusion matrix."""

    def __init__(
        self,
        model: torch.nn.Module,
        args: ClassificationConfig,
        *,
        num_labels: int,
        label_names: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.num_labels = num_labels
        self.label_names_ = label_names or [str(i) for i in range(num_labels)]
        opts = LossOptions(args.label_smoothing, args.class_weights, args.focal_gamma)
        kwargs.setdefault("loss_fn", build_loss(args.loss, args.loss_weights, opts))
        kwargs.setdefault("metrics", classification_metrics(args, num_labels))
        super().__init__(model, args, **kwargs)

    def eval_artifacts(self, state: EvalState) -> dict[str, Any]:
        if state.metrics is None or "classification" not in state.metrics.families:
            return {}
        return {"confusion": state.metrics.family("classification").confusion.tolist()}

    def sample_records(self, indices, predictions, references, losses, inputs=None) -> list[dict[str, Any]]:
        probs = softmax(predictions.float().cpu().numpy())
        preds = probs.argmax(axis=1)
        names = self.label_names_
        rows = []
        for k, index in enumerate(indices):
            y, p = int(references[k]), int(preds[k])
            rows.append(
                {
                    "index": index,
                    "label": y,
                    "label_name": names[y],
                    "prediction": p,
                    "prediction_name": names[p],
                    "confidence": f"{probs[k, p]:.6f}",
                    "correct": int(y == p),
                    "loss": f"{float(losses[k]):.6f}" if losses is not None else "",
                }
            )
        return rows

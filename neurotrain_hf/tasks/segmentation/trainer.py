"""``SegmentationTrainer``: NeuroTrainer for dense masks (Dice-type losses, FOV metrics, overlays)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...losses import LossOptions, build_loss
from ...models.registry import logits_of
from ...trainer.neuro_trainer import NeuroTrainer
from .config import SegmentationConfig
from .metrics import SegmentationMetrics
from .overlay import save_overlay


def upsample_to(logits: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Resize (B, C, *spatial) logits to ``size`` ((bi/tri)linear), unchanged when already that size."""
    if tuple(logits.shape[2:]) == tuple(size):
        return logits
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(logits, size=tuple(size), mode=mode, align_corners=False)


def image_scores(pred: np.ndarray, ref: np.ndarray, inside: np.ndarray) -> dict[str, float]:
    """Per-image foreground Dice/IoU/sensitivity/specificity/accuracy inside ``inside`` (binary rule)."""
    p, r = pred[inside] > 0, ref[inside] > 0
    tp, fp, fn = float((p & r).sum()), float((p & ~r).sum()), float((~p & r).sum())
    tn = float(inside.sum()) - tp - fp - fn
    return {
        "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "iou": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "accuracy": (tp + tn) / max(tp + tn + fp + fn, 1.0),
    }


class SegmentationTrainer(NeuroTrainer):
    """Registry loss on (B, C, *spatial) logits, streamed FOV metrics, per-image rows and overlay PNGs."""

    def __init__(
        self,
        model: torch.nn.Module,
        args: SegmentationConfig,
        *,
        num_labels: int,
        mean: tuple[float, ...] = (0.0,),
        std: tuple[float, ...] = (1.0,),
        sources: list[str] | None = None,
        label_names: list[str] | None = None,
        regions: dict[str, list[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.num_labels = num_labels
        self.mean, self.std = mean, std
        self.class_names, self.regions = label_names, regions
        self.case_ids: list[str] | None = None
        opts = LossOptions(args.label_smoothing, args.class_weights, args.focal_gamma)
        kwargs.setdefault("loss_fn", build_loss(args.loss, args.loss_weights, opts))
        names = list(args.metrics or [])
        tolerance = args.nsd_tolerances or args.nsd_tolerance
        metrics = (
            SegmentationMetrics(
                names, num_labels, args.threshold, sources or (), tolerance, label_names, regions
            )
            if names
            else None
        )
        kwargs.setdefault("metrics", metrics)
        super().__init__(model, args, **kwargs)

    def loss_inputs(self, outputs: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at the label resolution (SegFormer-style heads predict at 1/4 size)."""
        logits, labels = logits_of(outputs), inputs["labels"]
        return upsample_to(logits, labels.shape[1:]), labels

    def loss_from_outputs(
        self, outputs: Any, inputs: dict[str, Any], num_items_in_batch=None
    ) -> torch.Tensor:
        """Main loss, plus deep supervision on the auxiliary logit maps when enabled (nnU-Net weights).

        Weights halve from the finest auxiliary output to the coarsest and are normalised with the
        main output's weight 1 to sum to 1. Auxiliary losses are computed first so that the logged
        per-term values are the main output's.
        """
        aux = outputs.get("hidden_states") if self.args.deep_supervision and self.model.training else None
        if not aux:
            return super().loss_from_outputs(outputs, inputs, num_items_in_batch)
        labels = inputs["labels"]
        weights = [0.5 ** (len(aux) - i) for i in range(len(aux))] + [1.0]  # coarsest first, main last
        total = sum(weights)
        loss = sum(
            w / total * self.loss_fn(upsample_to(a, labels.shape[1:]), labels, num_items_in_batch)
            for w, a in zip(weights, aux)
        )
        return loss + weights[-1] / total * super().loss_from_outputs(outputs, inputs, num_items_in_batch)

    def eval_artifacts(self, state) -> dict[str, Any]:
        """The validation best-F1 threshold (saved with the model) beside the metrics."""
        if state.metrics is None or not state.metrics.binary:
            return {}
        best = state.metrics.sweep.best_threshold("f1") if state.metrics.sweep.pos.sum() else None
        return {"best_f1_threshold": best["threshold"], "best_f1": best["f1"]} if best else {}

    def count_items(self, inputs: dict[str, Any]) -> None:
        """Segmentation losses are per-sample means (Dice is not a sum over pixels): a batch mean."""
        return None

    def _picture(self, pixel_values: torch.Tensor) -> np.ndarray:
        """Undo the normalisation for display: (C, H, W) -> (H, W, C) float in [0, 1]."""
        mean = torch.as_tensor(self.mean).view(-1, 1, 1)
        std = torch.as_tensor(self.std).view(-1, 1, 1)
        x = (pixel_values.detach().float().cpu() * std + mean).clamp(0, 1)
        return x.permute(1, 2, 0).numpy()

    def predict(self, test_dataset, *args: Any, **kwargs: Any):
        """As ``Trainer.predict``; keeps the split's case ids for the per-case CSV of volumes."""
        self.case_ids = (
            list(test_dataset.with_format(None)["id"]) if "id" in test_dataset.column_names else None
        )
        try:
            return super().predict(test_dataset, *args, **kwargs)
        finally:
            self.case_ids = None

    def _output_folder(self) -> tuple[Path | None, str]:
        if self.sample_writer is None:
            return None, "test"
        return self.sample_writer.path.parent / "overlays", self.sample_writer.path.stem.replace(
            "_per_sample", ""
        )

    def sample_records(self, indices, predictions, references, losses, inputs=None) -> list[dict[str, Any]]:
        if references.get("spacing") is not None:
            return self._volume_records(indices, predictions, references, losses, inputs)
        maps = predictions["labels"].cpu().numpy()
        refs = references["labels"].cpu().numpy()
        fovs = references["fov"].cpu().numpy().astype(bool)
        rows = []
        folder, prefix = self._output_folder()
        for k, index in enumerate(indices):
            scores = image_scores(maps[k], refs[k], fovs[k])
            rows.append(
                {
                    "index": index,
                    **{name: f"{value:.6f}" for name, value in scores.items()},
                    "loss": f"{float(losses[k]):.6f}" if losses is not None else "",
                }
            )
            if folder is not None and inputs is not None and index < self.args.overlays:
                save_overlay(
                    Path(folder) / f"{prefix}_{index:04d}.png",
                    self._picture(inputs["pixel_values"][k]),
                    refs[k],
                    maps[k],
                    fov=fovs[k],
                )
        return rows

    def _volume_records(self, indices, predictions, references, losses, inputs) -> list[dict[str, Any]]:
        """Per case: id, Dice per class (or region) on the original grid, loss; overlay of the slice with
        the most reference foreground."""
        from .volume_overlay import save_volume_overlay

        metrics = SegmentationMetrics(
            ["mean_dice", "per_class"],
            self.num_labels,
            self.args.threshold,
            label_names=self.class_names,
            regions=self.regions,
        )
        folder, prefix = self._output_folder()
        rows = []
        for k, index in enumerate(indices):
            metrics.reset()
            metrics.update(
                {
                    "labels": predictions["labels"][k : k + 1],
                    "probability": _slice(predictions.get("probability"), k),
                },
                {"labels": references["labels"][k : k + 1]},
            )
            scores = metrics.compute()
            case = self.case_ids[index] if self.case_ids and index < len(self.case_ids) else str(index)
            rows.append(
                {
                    "index": index,
                    "id": case,
                    **{name: f"{value:.6f}" for name, value in scores.items()},
                    "loss": f"{float(losses[k]):.6f}" if losses is not None else "",
                }
            )
            if folder is not None and inputs is not None and index < self.args.overlays:
                save_volume_overlay(
                    Path(folder) / f"{prefix}_{case}.png",
                    inputs,
                    k,
                    references["labels"][k].cpu().numpy(),
                    predictions["labels"][k].cpu().numpy(),
                )
        return rows


def _slice(value: Any, k: int) -> Any:
    return None if value is None else value[k : k + 1]

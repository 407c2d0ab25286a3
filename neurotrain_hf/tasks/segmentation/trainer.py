"""``SegmentationTrainer``: NeuroTrainer for dense masks (Dice-type losses, deep supervision, FOV metrics)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...metrics.registry import StreamingMetrics
from ...models.registry import logits_of
from ...trainer.neuro_trainer import NeuroTrainer
from .config import SegmentationConfig
from .settings import SegmentationSettings


def upsample_to(logits: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Resize (B, C, *spatial) logits to ``size`` ((bi/tri)linear), unchanged when already that size."""
    if tuple(logits.shape[2:]) == tuple(size):
        return logits
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(logits, size=tuple(size), mode=mode, align_corners=False)


class SegmentationTrainer(NeuroTrainer):
    """Registry loss on (B, C, *spatial) logits, streamed FOV metrics, per-image rows and overlay PNGs."""

    def __init__(
        self,
        model: torch.nn.Module,
        args: SegmentationConfig,
        *,
        info: Any,
        settings: SegmentationSettings,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("loss_fn", args.build_loss())
        names = list(args.metrics or [])
        metrics = (
            StreamingMetrics(
                names,
                args.metric_families,
                num_labels=info.num_labels,
                threshold=settings,  # read when computing: "best" follows the validation choice
                sources=info.sources or (),
                nsd_tolerance=args.nsd_tolerances or args.nsd_tolerance,
                label_names=info.label_names,
                regions=info.regions,
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
        if state.metrics is None or "segmentation" not in state.metrics.families:
            return {}
        metrics = state.metrics.family("segmentation")
        if not metrics.binary or not metrics.sweep.pos.sum():
            return {}
        best = metrics.sweep.best_threshold("f1")
        return {"best_f1_threshold": best["threshold"], "best_f1": best["f1"]}

    def count_items(self, inputs: dict[str, Any]) -> None:
        """Segmentation losses are per-sample means (Dice is not a sum over pixels): a batch mean."""
        return None

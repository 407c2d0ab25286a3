"""``ClassificationTrainer``: NeuroTrainer for image classification (``pixel_values`` -> logits -> label)."""

from __future__ import annotations

from typing import Any

import torch

from ...metrics.registry import StreamingMetrics
from ...trainer.evaluation import EvalState
from ...trainer.neuro_trainer import NeuroTrainer
from .config import ClassificationConfig


def classification_metrics(args: ClassificationConfig, num_labels: int) -> StreamingMetrics | None:
    names = list(args.metrics or [])
    if not names:
        return None
    return StreamingMetrics(names, args.metric_families, num_labels=num_labels, average=args.average)


class ClassificationTrainer(NeuroTrainer):
    """Registry loss (cross-entropy by default) on logits; evaluations keep their confusion matrix."""

    def __init__(
        self, model: torch.nn.Module, args: ClassificationConfig, *, num_labels: int, **kwargs: Any
    ) -> None:
        self.num_labels = num_labels
        kwargs.setdefault("loss_fn", args.build_loss())
        kwargs.setdefault("metrics", classification_metrics(args, num_labels))
        super().__init__(model, args, **kwargs)

    def eval_artifacts(self, state: EvalState) -> dict[str, Any]:
        if state.metrics is None or "classification" not in state.metrics.families:
            return {}
        return {"confusion": state.metrics.family("classification").confusion.tolist()}

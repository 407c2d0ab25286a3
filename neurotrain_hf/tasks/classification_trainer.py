"""``ClassificationTrainer``: NeuroTrainer for image classification (logits -> label)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..losses import LossOptions, build_loss
from ..metrics.registry import StreamingMetrics
from ..trainer.neuro_trainer import NeuroTrainer
from .classification_config import ClassificationConfig


def classification_metrics(args: ClassificationConfig, num_labels: int) -> StreamingMetrics | None:
    names = list(args.metrics or [])
    if not names:
        return None
    return StreamingMetrics(names, num_labels=num_labels, average=args.average, keep_scores="auc" in names)


class ClassificationTrainer(NeuroTrainer):
    """Cross-entropy (or any registry loss) on ``pixel_values -> logits``; keeps the last confusion matrix."""

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
        self.label_names = label_names or [str(i) for i in range(num_labels)]
        self.confusion: np.ndarray | None = None
        opts = LossOptions(args.label_smoothing_factor, args.class_weights, args.focal_gamma)
        kwargs.setdefault("loss_fn", build_loss(args.loss, args.loss_weights, opts))
        kwargs.setdefault("metrics", classification_metrics(args, num_labels))
        super().__init__(model, args, **kwargs)

    def on_metrics_computed(self, metrics: StreamingMetrics) -> None:
        self.confusion = metrics.family("classification").confusion.copy()

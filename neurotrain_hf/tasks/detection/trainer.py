"""``DetectionTrainer``: NeuroTrainer for detectors (DETR family and torchvision) with COCO metrics.

The loss is the model's own (transformers DETR-family Hungarian loss, or the sum of torchvision's loss
dict); every term of the model's ``loss_dict`` is logged as a ``loss_<term>`` column. Evaluation streams
COCO metrics; the Tester's files (results json, ground truth, rows, drawings) are the task's (``outputs.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from ...metrics.registry import StreamingMetrics
from ...trainer.neuro_trainer import NeuroTrainer
from .config import DetectionConfig


class DetectionTrainer(NeuroTrainer):
    """The model's own loss with its terms logged; streamed COCO metrics."""

    def __init__(
        self, model: torch.nn.Module, args: DetectionConfig, *, masks: bool = False, **kwargs: Any
    ) -> None:
        names = list(args.metrics or [])
        metrics = (
            StreamingMetrics(
                names, args.metric_families, masks=masks, score_threshold=args.f1_score_threshold
            )
            if names
            else None
        )
        kwargs.setdefault("metrics", metrics)
        super().__init__(model, args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        terms = outputs.get("loss_dict") if isinstance(outputs, dict) else None
        if model.training and terms:
            scale = 1.0 / self.current_gradient_accumulation_steps
            for name, value in terms.items():
                if torch.is_tensor(value) and name.startswith(("loss", "classification", "bbox")):
                    key = name[5:] if name.startswith("loss_") else name
                    self._terms[key] = self._terms.get(key, 0.0) + value.detach().float() * scale
        return (loss, outputs) if return_outputs else loss

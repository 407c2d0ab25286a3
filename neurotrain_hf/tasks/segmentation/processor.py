"""``NeuroSegmentationProcessor``: the 2D image processor of segmentation models, with the
``post_process_semantic_segmentation`` that ``transformers.pipeline("image-segmentation")`` calls.

Preprocessing is ``NeuroImageProcessor``'s. Post-processing follows the model's ``SegmentationSettings``
(read from the ``config.json`` beside the processor): logits resized to each target size, scores to
labels at the settings' threshold (``scores_to_labels``), then the saved post-processing: the label maps
``neurotrain predict`` gives, pixel for pixel, for full-image settings. A pipeline runs one plain forward,
so sliding windows and test-time flips (which the Predictor applies) are not reproduced: a warning says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from ...data.processor import ModelConfigMixin, NeuroImageProcessor
from .settings import SegmentationSettings

logger = logging.getLogger(__name__)


class NeuroSegmentationProcessor(ModelConfigMixin, NeuroImageProcessor):
    """``NeuroImageProcessor`` plus semantic-segmentation post-processing from the model's settings."""

    def settings(self) -> SegmentationSettings:
        """The model's saved settings (defaults, with a warning, when its config.json was not read)."""
        if self.model_config is None:
            logger.warning("no model config.json beside this processor: default segmentation settings")
        return SegmentationSettings.of(_Config(self.model_config or {}))

    def post_process_semantic_segmentation(
        self, outputs: Any, target_sizes: Sequence[Sequence[int]] | None = None
    ) -> list[torch.Tensor]:
        """One (H, W) label map per image (at its target size, else at the logits' size)."""
        from .prediction import records

        settings = self.settings()
        if settings.mode != "full" or settings.mirror_axes:
            logger.warning(
                "the model's settings use %s; this post-processing sees one plain forward pass: use "
                "neurotrain_hf.Predictor for identical masks",
                "sliding windows" if settings.mode != "full" else f"test-time flips {settings.mirror_axes}",
            )
        inputs = (
            {"target_sizes": [tuple(int(v) for v in size) for size in target_sizes]} if target_sizes else None
        )
        return [torch.from_numpy(r["mask"]).long() for r in records(outputs, inputs, settings)]


class _Config:
    """A saved config.json dict read like a model config (attributes)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

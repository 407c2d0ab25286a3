"""``NeuroSegmentationProcessor``: the 2D image processor of segmentation models, with the
``post_process_semantic_segmentation`` that ``transformers.pipeline("image-segmentation")`` calls.

Preprocessing is ``NeuroImageProcessor``'s. Post-processing follows the model's ``SegmentationSettings``
(read from the ``config.json`` beside the processor): logits resized to each target size, scores to
labels at the settings' threshold (``scores_to_labels``), then the saved post-processing: the label maps
``neurotrain predict`` gives, pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...data.processor import ModelConfigMixin, NeuroImageProcessor
from .settings import SETTINGS_KEY, SegmentationSettings


class NeuroSegmentationProcessor(ModelConfigMixin, NeuroImageProcessor):
    """``NeuroImageProcessor`` plus semantic-segmentation post-processing from the model's settings."""

    def settings(self) -> SegmentationSettings:
        return SegmentationSettings.from_dict((self.model_config or {}).get(SETTINGS_KEY))

    def post_process_semantic_segmentation(
        self, outputs: Any, target_sizes: Sequence[Sequence[int]] | None = None
    ) -> list[torch.Tensor]:
        """One (H, W) label map per image (at its target size, else at the logits' size)."""
        from .prediction import records

        inputs = (
            {"target_sizes": [tuple(int(v) for v in size) for size in target_sizes]} if target_sizes else None
        )
        return [torch.from_numpy(r["mask"]).long() for r in records(outputs, inputs, self.settings())]

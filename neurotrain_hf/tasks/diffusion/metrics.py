"""The diffusion task's metric families: FID / KID between generated and real images through one feature
network and a classifier's accuracy on class-conditioned samples (``metrics.generation``); for
mask-conditioned samples the Dice between the conditioning mask and a segmentation model's prediction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...metrics.registry import register_family


@register_family(
    "generation",
    ("fid", "kid", "sample_accuracy"),
    reports=("kid_std", "fid_samples"),
    lower_is_better=("fid", "kid", "kid_std"),
)
def generation_family(names: Sequence[str], **_: object):
    from ...metrics.generation import GenerationAccumulator

    return GenerationAccumulator()


class MaskDiceAccumulator:
    """Mean per-image Dice of the segmenter's foreground on each generated image vs its conditioning mask
    (1 when both are empty); the sums merge across processes by addition."""

    STATE = ("dice_sum", "count")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.dice_sum, self.count = 0.0, 0

    def update(self, predictions: dict[str, Any], references: dict[str, Any]) -> None:
        if predictions.get("segmented") is None or references.get("mask") is None:
            return
        predicted = np.asarray(predictions["segmented"], dtype=bool).reshape(
            len(predictions["segmented"]), -1
        )
        wanted = np.asarray(references["mask"].cpu(), dtype=bool).reshape(len(predicted), -1)
        overlap = (predicted & wanted).sum(1)
        total = predicted.sum(1) + wanted.sum(1)
        self.dice_sum += float(np.where(total > 0, 2 * overlap / np.maximum(total, 1), 1.0).sum())
        self.count += len(predicted)

    def compute(self, keys: Sequence[str]) -> dict[str, float]:
        return {"mask_dice": self.dice_sum / self.count if self.count else float("nan")}


@register_family("mask_generation", ("mask_dice",))
def mask_generation_family(names: Sequence[str], **_: object) -> MaskDiceAccumulator:
    return MaskDiceAccumulator()

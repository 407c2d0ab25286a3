"""The ``[augmentation]`` training transform: the model's processor plus random ``torchvision.transforms.v2`` ops.

Deterministic steps (decode, channels, resize, center crop, normalise) are the saved
``NeuroImageProcessor``'s, so evaluation, testing and prediction share one implementation. Random
operations (crop with padding, flips, rotation, colour jitter) are torchvision v2 transforms applied
per image; they draw from torch's RNG, which the batch loader seeds per batch from (seed, epoch,
sample indices) so that augmentation does not depend on fetch order, workers or where a run resumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..config.sections import AugmentationConfig
from .processor import NeuroImageProcessor


def random_ops(aug: AugmentationConfig, channels: int):
    """The training-only v2 transforms from ``[augmentation]`` (None when there are none)."""
    from torchvision.transforms import v2

    ops: list[Any] = []
    if aug.random_crop:
        ops.append(v2.RandomCrop(aug.random_crop, padding=aug.crop_padding or None))
    if aug.horizontal_flip:
        ops.append(v2.RandomHorizontalFlip(aug.horizontal_flip))
    if aug.vertical_flip:
        ops.append(v2.RandomVerticalFlip(aug.vertical_flip))
    if aug.rotation:
        ops.append(v2.RandomRotation(aug.rotation))
    if aug.color_jitter:
        s = aug.color_jitter
        ops.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s if channels == 3 else None))
    return v2.Compose(ops) if ops else None


def image_processor(aug: AugmentationConfig, channels: int, mean, std) -> NeuroImageProcessor:
    """The deterministic preprocessing an ``[augmentation]`` section implies."""
    return NeuroImageProcessor(
        num_channels=channels,
        size=aug.resize,
        crop_size=aug.random_crop,
        do_normalize=aug.normalize,
        image_mean=list(mean),
        image_std=list(std),
    )


@dataclass
class ImageTransform:
    """Batch transform for ``set_transform``: ``image``/``label`` columns -> ``pixel_values``/``labels``."""

    processor: NeuroImageProcessor
    aug: AugmentationConfig
    train: bool = False
    image_column: str = "image"
    label_column: str = "label"
    _random: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._random = random_ops(self.aug, self.processor.num_channels) if self.train else None

    def images(self, images) -> torch.Tensor:
        """A batch of images -> (B, C, H, W) float32."""
        x = self.processor.decode(images)
        if self._random is None:
            return self.processor.finish(x)
        return self.processor.finish([self._random(t) for t in x], crop=False)

    def __call__(self, batch: dict) -> dict:
        out = {"pixel_values": self.images(batch[self.image_column])}
        if self.label_column in batch:
            out["labels"] = torch.as_tensor(np.asarray(batch[self.label_column]), dtype=torch.long)
        return out

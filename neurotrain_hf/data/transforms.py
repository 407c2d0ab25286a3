"""Batched on-the-fly image transforms from ``[augmentation]``, attached with ``Dataset.set_transform``.

Input: a batch dict whose ``image`` column holds HWC images (PIL images, uint8 arrays in [0, 255] or
float arrays in [0, 1]). Output: ``pixel_values`` (B, C, H, W) float32 and ``labels`` (B,) int64.
Random operations (crop, flips, rotation, color jitter) draw from a ``generator`` when one is given:
the batch loader seeds one per batch from (seed, epoch, sample indices), so augmentations do not
depend on fetch order, prefetching, worker processes or where a run was resumed. Without one they
use torch's global RNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config.sections import AugmentationConfig


def _from_numpy(arr: np.ndarray) -> torch.Tensor:
    """Share memory with writable arrays; copy read-only ones (Arrow-backed views)."""
    arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def to_chw_float(image) -> torch.Tensor:
    """One HWC image (PIL, uint8 or float array) -> float32 CHW tensor in [0, 1]."""
    if hasattr(image, "mode") and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")  # palette, CMYK and alpha images
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    tensor = _from_numpy(arr).permute(2, 0, 1)
    return tensor.float().div_(255.0) if tensor.dtype == torch.uint8 else tensor.float()


def stack_images(images) -> torch.Tensor | list[torch.Tensor]:
    """A batch of HWC images -> (B, C, H, W) float tensor, or a list when sizes differ."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        tensor = _from_numpy(images).permute(0, 3, 1, 2)
        return tensor.float().div_(255.0) if tensor.dtype == torch.uint8 else tensor.float()
    tensors = [to_chw_float(img) for img in images]
    shapes = {tuple(t.shape) for t in tensors}
    return torch.stack(tensors) if len(shapes) == 1 else tensors


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    squeeze = x.dim() == 3
    x = x.unsqueeze(0) if squeeze else x
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.squeeze(0) if squeeze else x


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return x[..., top : top + size, left : left + size]


@dataclass
class ImageBatchTransform:
    """Callable batch transform; ``train=True`` enables the random operations."""

    aug: AugmentationConfig
    mean: Sequence[float]
    std: Sequence[float]
    train: bool = False
    image_column: str = "image"
    label_column: str = "label"

    def _random_ops(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        aug = self.aug

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=g))

        if aug.random_crop:
            if aug.crop_padding:
                x = F.pad(x, [aug.crop_padding] * 4)
            h, w = x.shape[-2:]
            top = int(torch.randint(0, max(h - aug.random_crop, 0) + 1, (), generator=g))
            left = int(torch.randint(0, max(w - aug.random_crop, 0) + 1, (), generator=g))
            x = x[..., top : top + aug.random_crop, left : left + aug.random_crop]
        if aug.horizontal_flip and uniform(0, 1) < aug.horizontal_flip:
            x = x.flip(-1)
        if aug.vertical_flip and uniform(0, 1) < aug.vertical_flip:
            x = x.flip(-2)
        if aug.rotation:
            x = TF.rotate(x, uniform(-aug.rotation, aug.rotation))
        if aug.color_jitter:
            s = aug.color_jitter
            x = TF.adjust_brightness(x, uniform(1 - s, 1 + s))
            x = TF.adjust_contrast(x, uniform(1 - s, 1 + s))
            if x.shape[0] == 3:
                x = TF.adjust_saturation(x, uniform(1 - s, 1 + s))
            x = x.clamp(0.0, 1.0)
        return x

    @property
    def has_random_ops(self) -> bool:
        a = self.aug
        return bool(a.random_crop or a.horizontal_flip or a.vertical_flip or a.rotation or a.color_jitter)

    def images(self, images, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform a batch of images to a (B, C, H, W) tensor; random draws come from ``generator``."""
        x = stack_images(images)
        if self.aug.resize:
            x = (
                _resize(x, self.aug.resize)
                if torch.is_tensor(x)
                else [_resize(t, self.aug.resize) for t in x]
            )
        if self.train and self.has_random_ops:
            x = [self._random_ops(t, generator) for t in x]
        elif self.aug.random_crop:
            x = (
                _center_crop(x, self.aug.random_crop)
                if torch.is_tensor(x)
                else [_center_crop(t, self.aug.random_crop) for t in x]
            )
        if not torch.is_tensor(x):
            shapes = {tuple(t.shape) for t in x}
            if len(shapes) > 1:
                raise ValueError(
                    f"images in one batch have different sizes {sorted(shapes)}: set [augmentation] resize"
                )
            x = torch.stack(x)
        if self.aug.normalize:
            mean = torch.as_tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.as_tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x.contiguous()

    def __call__(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        out = {"pixel_values": self.images(batch[self.image_column], generator)}
        if self.label_column in batch:
            out["labels"] = torch.as_tensor(np.asarray(batch[self.label_column]), dtype=torch.long)
        return out

"""Joint image + mask (+ FOV) transforms: ``torchvision.transforms.v2`` on ``tv_tensors``.

The image is a ``tv_tensors.Image`` and the mask and FOV are ``tv_tensors.Mask``, so every geometric
op (crop, flips, rotation, elastic) moves them together and masks are resampled with nearest
neighbours; photometric ops (colour jitter, gamma, CLAHE) touch the image only. The ops are the
shared ``data.transforms.image_ops``; patches are cropped around a foreground pixel with
probability ``foreground_ratio`` (nnU-Net's oversampling), else anywhere.
Random draws come from torch's RNG, which the batch loader seeds per batch (exact resume).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ...data.images import decode_image
from ...data.processor import NeuroImageProcessor
from ...data.transforms import image_ops
from .config import SegmentationAugmentation


class ForegroundCrop(v2.Transform):
    """Random ``size`` crop; with probability ``foreground_ratio`` centred on a random foreground pixel."""

    def __init__(self, size: int, foreground_ratio: float = 0.0) -> None:
        super().__init__()
        self.size, self.foreground_ratio = size, foreground_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        mask = next(x for x in flat_inputs if isinstance(x, tv_tensors.Mask))
        h, w = mask.shape[-2:]
        s = self.size
        if self.foreground_ratio and float(torch.rand(())) < self.foreground_ratio:
            fg = torch.nonzero(mask.reshape(h, w) > 0)
            if len(fg):
                y, x = fg[int(torch.randint(len(fg), ()))].tolist()
                top = min(max(y - s // 2, 0), max(h - s, 0))
                left = min(max(x - s // 2, 0), max(w - s, 0))
                return {"top": top, "left": left}
        return {
            "top": int(torch.randint(max(h - s, 0) + 1, ())),
            "left": int(torch.randint(max(w - s, 0) + 1, ())),
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return TF.crop(inpt, params["top"], params["left"], self.size, self.size)


def joint_image_ops(aug: SegmentationAugmentation, channels: int) -> v2.Compose | None:
    """The shared ``[augmentation]`` ops with foreground-centred patches instead of plain random crops."""
    crop = ForegroundCrop(aug.random_crop, aug.foreground_ratio) if aug.random_crop else None
    return image_ops(aug, channels, crop=crop)


def decode_mask(value: Any, binary: bool) -> torch.Tensor:
    """A mask value -> (H, W) uint8 labels; binary masks: foreground where value > half the file's max."""
    tensor = decode_image(value, 1)[0]
    if binary:
        top = float(tensor.max()) if tensor.numel() else 0.0
        return (tensor > top / 2).to(torch.uint8) if top > 0 else torch.zeros_like(tensor, dtype=torch.uint8)
    return tensor.to(torch.uint8) if tensor.dtype != torch.uint8 else tensor


@dataclass
class SegmentationTransform:
    """``image``/``mask``/``fov`` columns -> ``pixel_values`` (B,C,H,W), ``labels`` (B,H,W), ``fov`` (B,H,W)."""

    processor: NeuroImageProcessor
    aug: SegmentationAugmentation
    binary: bool = True
    train: bool = False
    _random: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._random = joint_image_ops(self.aug, self.processor.num_channels) if self.train else None

    def _sample(self, image: Any, mask: Any, fov: Any) -> tuple[torch.Tensor, ...]:
        """One sample through decode, resize and the random ops; training carries no FOV (unused)."""
        img = tv_tensors.Image(decode_image(image, self.processor.num_channels))
        h, w = img.shape[-2:]
        parts = [
            img,
            tv_tensors.Mask(
                decode_mask(mask, self.binary) if mask is not None else torch.zeros(h, w, dtype=torch.uint8)
            ),
        ]
        if not self.train:
            parts.append(
                tv_tensors.Mask(
                    decode_mask(fov, True) if fov is not None else torch.ones(h, w, dtype=torch.uint8)
                )
            )
        if self.processor.size:
            parts = [TF.resize(p, [self.processor.size, self.processor.size]) for p in parts]
        if self._random is not None:
            parts = self._random(*parts)
        return tuple(p.as_subclass(torch.Tensor) for p in parts)

    def __call__(self, batch: dict) -> dict:
        n = len(batch["image"])
        masks = batch.get("mask", [None] * n)
        fovs = batch.get("fov", [None] * n)
        samples = [self._sample(batch["image"][i], masks[i], fovs[i]) for i in range(n)]
        out = {"pixel_values": self.processor.finish([s[0] for s in samples], crop=False)}
        out["labels"] = torch.stack([s[1] for s in samples]).long()
        if not self.train:
            out["fov"] = torch.stack([s[2] for s in samples]).bool()
        if "source_index" in batch:  # which dataset of a hybrid each sample came from
            out["source"] = torch.as_tensor(np.asarray(batch["source_index"]), dtype=torch.long)
        return out

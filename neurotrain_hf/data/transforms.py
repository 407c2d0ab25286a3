"""2D training transforms: the model's processor plus random ``torchvision.transforms.v2`` ops.

``image_ops`` builds the ops of the shared ``[augmentation]`` key group ``config.fields.ImageOpsFields``
(the image tasks' sections combine it); geometric ops move ``tv_tensors`` masks and boxes with the
image, photometric ones (colour jitter, gamma, CLAHE) touch only the image.

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
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..config.fields import ImageOpsFields
from .processor import NeuroImageProcessor

NOT_IMAGES = (tv_tensors.Mask, tv_tensors.BoundingBoxes)


class RandomGamma(v2.Transform):
    """Gamma correction of the image only, gamma uniform in [1 - g, 1 + g]."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = strength

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"gamma": 1 - self.strength + 2 * self.strength * float(torch.rand(()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, NOT_IMAGES):  # masks (and boxes) pass through untouched
            return inpt
        return TF.adjust_gamma(inpt, params["gamma"])


class RandomCLAHE(v2.Transform):
    """Contrast-limited adaptive histogram equalisation of the image (scikit-image), with probability ``p``."""

    def __init__(self, p: float, clip_limit: float = 0.01) -> None:
        super().__init__()
        self.p, self.clip_limit = p, clip_limit

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"apply": float(torch.rand(())) < self.p}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["apply"] or isinstance(inpt, NOT_IMAGES):
            return inpt
        from skimage.exposure import equalize_adapthist

        image = inpt.as_subclass(torch.Tensor)
        scale = 255.0 if image.dtype == torch.uint8 else 1.0
        arr = (image.float() / scale).permute(1, 2, 0).numpy()
        out = equalize_adapthist(arr[..., 0] if arr.shape[-1] == 1 else arr, clip_limit=self.clip_limit)
        out = torch.from_numpy(np.asarray(out, dtype=np.float32)).reshape(arr.shape).permute(2, 0, 1)
        out = (out * scale).round().to(image.dtype) if image.dtype == torch.uint8 else out
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


def image_ops(aug: ImageOpsFields, channels: int, crop: Any = None) -> v2.Compose | None:
    """The training-only v2 transforms from ``[augmentation]`` (None when there are none).

    ``crop`` replaces the default ``RandomCrop(random_crop, padding=crop_padding)`` (e.g. segmentation's
    foreground-centred patches). Geometric ops move ``tv_tensors`` masks with the image; photometric
    ops touch the image only.
    """
    ops: list[Any] = []
    if aug.random_crop:
        ops.append(crop or v2.RandomCrop(aug.random_crop, padding=aug.crop_padding or None))
    if aug.horizontal_flip:
        ops.append(v2.RandomHorizontalFlip(aug.horizontal_flip))
    if aug.vertical_flip:
        ops.append(v2.RandomVerticalFlip(aug.vertical_flip))
    if aug.rotation:
        ops.append(v2.RandomRotation(aug.rotation))
    if aug.elastic:
        ops.append(v2.ElasticTransform(alpha=aug.elastic, sigma=5.0))
    if aug.color_jitter:
        s = aug.color_jitter
        ops.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s if channels == 3 else None))
    if aug.gamma:
        ops.append(RandomGamma(aug.gamma))
    if aug.clahe:
        ops.append(RandomCLAHE(aug.clahe))
    return v2.Compose(ops) if ops else None


def image_processor(aug: Any, channels: int, mean, std) -> NeuroImageProcessor:
    """The deterministic preprocessing an ``[augmentation]`` section (``ImageOpsFields`` + ``NormalizeFields``)
    implies."""
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
    aug: ImageOpsFields
    train: bool = False
    image_column: str = "image"
    label_column: str = "label"
    _random: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._random = image_ops(self.aug, self.processor.num_channels) if self.train else None

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

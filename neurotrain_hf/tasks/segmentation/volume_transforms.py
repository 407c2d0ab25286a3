"""3D batch transforms over cached preprocessed volumes: MONAI dictionary transforms for training,
whole volumes with their original geometry for evaluation.

Training: pad to the patch, ``RandCropByPosNegLabeld`` (foreground-centred with probability
``foreground_ratio``; ``RandSpatialCropSamplesd`` when it is 0), flips per axis, 90-degree rotations,
small rotations, intensity scale and shift. The MONAI random state is seeded from torch's generator,
which the batch loader seeds per batch from (seed, epoch, indices), so resumed runs draw the same
patches. Evaluation: the preprocessed volume, its label on the original file's grid, both affines,
the original shape and spacing (metrics in mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import SegmentationAugmentation
from .volume_cache import load_meta


def patch_size(aug: SegmentationAugmentation) -> list[int]:
    """``[augmentation] patch_size`` (one value = a cube), else ``random_crop`` as a cube, else 64."""
    size = aug.patch_size or ([aug.random_crop] if aug.random_crop else [64])
    return [int(s) for s in (size * 3 if len(size) == 1 else size)]


def volume_ops(aug: SegmentationAugmentation, patch: list[int]):
    """The MONAI ``Compose`` of the random training transforms."""
    from monai import transforms as mt

    keys = ["image", "label"]
    ops: list[Any] = [mt.SpatialPadd(keys, spatial_size=patch)]
    if aug.foreground_ratio > 0:
        ops.append(
            mt.RandCropByPosNegLabeld(
                keys,
                label_key="label",
                spatial_size=patch,
                pos=aug.foreground_ratio,
                neg=1.0 - aug.foreground_ratio,
                num_samples=aug.samples_per_volume,
                allow_smaller=True,
            )
        )
    else:
        ops.append(
            mt.RandSpatialCropSamplesd(
                keys, roi_size=patch, num_samples=aug.samples_per_volume, random_size=False
            )
        )
    if aug.axis_flip:
        ops += [mt.RandFlipd(keys, prob=aug.axis_flip, spatial_axis=axis) for axis in range(3)]
    if aug.rotate90:
        ops.append(mt.RandRotate90d(keys, prob=aug.rotate90, max_k=3, spatial_axes=(0, 1)))
    if aug.rotation:
        angle = math.radians(aug.rotation)
        ops.append(
            mt.RandRotated(
                keys,
                range_x=angle,
                range_y=angle,
                range_z=angle,
                prob=0.2,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            )
        )
    if aug.intensity_scale:
        ops.append(mt.RandScaleIntensityd("image", factors=aug.intensity_scale, prob=0.5))
    if aug.intensity_shift:
        ops.append(mt.RandShiftIntensityd("image", offsets=aug.intensity_shift, prob=0.5))
    return mt.Compose(ops)


@dataclass
class VolumeTrainTransform:
    """``cache`` folders -> ``pixel_values`` (B x samples, C, *patch) and ``labels`` (B x samples, *patch)."""

    aug: SegmentationAugmentation
    crop_foreground: bool = False
    _ops: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._ops = volume_ops(self.aug, patch_size(self.aug))

    def _arrays(self, folder: str) -> dict[str, torch.Tensor]:
        image = np.load(Path(folder) / "image.npy", mmap_mode="r")
        label = np.load(Path(folder) / "label.npy", mmap_mode="r")
        if self.crop_foreground:
            box = tuple(slice(a, b) for a, b in load_meta(folder)["bbox"])
            image, label = image[(slice(None), *box)], label[box]
        return {"image": torch.from_numpy(np.array(image)), "label": torch.from_numpy(np.array(label))[None]}

    def __call__(self, batch: dict) -> dict:
        from monai.data import set_track_meta

        self._ops.set_random_state(seed=int(torch.randint(0, 2**31 - 1, ())))
        images, labels = [], []
        set_track_meta(False)  # plain tensors: no per-op metadata bookkeeping
        try:
            for folder in batch["cache"]:
                samples = self._ops(self._arrays(folder))
                for sample in samples if isinstance(samples, list) else [samples]:
                    images.append(torch.as_tensor(sample["image"]))
                    labels.append(torch.as_tensor(sample["label"])[0])
        finally:
            set_track_meta(True)
        return {"pixel_values": torch.stack(images).float(), "labels": torch.stack(labels).long()}


def eval_item(folder: str | Path) -> dict[str, torch.Tensor]:
    """One cached case for evaluation: preprocessed image, original-grid label and the geometry."""
    folder = Path(folder)
    meta = load_meta(folder)
    label_file = folder / "label_original.npy"
    shape = meta["shape"]
    return {
        "pixel_values": torch.from_numpy(np.load(folder / "image.npy")),
        "labels": torch.from_numpy(np.load(label_file)).long()
        if label_file.is_file()
        else torch.zeros(shape, dtype=torch.long),
        "src_affine": torch.as_tensor(meta["src_affine"], dtype=torch.float64),
        "dst_affine": torch.as_tensor(meta["dst_affine"], dtype=torch.float64),
        "dst_shape": torch.as_tensor(shape, dtype=torch.long),
        "spacing": torch.as_tensor(meta["spacing"], dtype=torch.float64),
    }


def eval_transform(batch: dict) -> dict:
    """Cached cases -> a batch (volumes of one batch must share their shapes: evaluation uses batch 1)."""
    items = [eval_item(folder) for folder in batch["cache"]]
    out = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    if "source_index" in batch:
        out["source"] = torch.as_tensor(np.asarray(batch["source_index"]), dtype=torch.long)
    return out

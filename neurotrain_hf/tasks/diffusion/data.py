"""Diffusion data: the configured source split and checked, and the transform that turns rows into
``pixel_values`` in [-1, 1] (plus ``class_labels`` or ``mask`` in {-1, 1}) and a ``sample_id``.

``sample_id`` (the row's position in its split) seeds the fixed evaluation noise of each sample, so an
evaluation is the same whatever the batch size, process count or order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import torch
import torch.nn.functional as F

from ...data.images import decode_image, image_name, to_float
from ...data.registry import DATASETS
from ...data.splits import add_missing_splits
from ...errors import DataError
from ...tasks.base import TaskData
from . import sources as _sources  # noqa: F401  (registers the diffusion datasets)

SAMPLE_ID = "sample_id"


@dataclass
class DiffusionInfo:
    """What the model is sized for: image size and channels, class names (class conditioning) and mask
    channels (mask conditioning)."""

    image_size: int
    channels: int
    conditioning: str
    class_names: list[str]
    mask_channels: int


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) float in [0, 1] -> (C, size, size): bicubic with antialiasing (PIL-like), clamped."""
    if tuple(image.shape[-2:]) == (size, size):
        return image
    return F.interpolate(image[None], size=(size, size), mode="bicubic", antialias=True, align_corners=False)[
        0
    ].clamp(0, 1)


def mask_tensor(value: Any, size: int, where: str) -> torch.Tensor:
    """A mask / label map -> (1, size, size) in {-1, 1} (foreground: any non-zero value)."""
    mask = decode_image(value, 1)
    mask = (mask > 0).float() if mask.dtype == torch.uint8 else (mask > 0.5).float()
    if tuple(mask.shape[-2:]) != (size, size):
        mask = F.interpolate(mask[None], size=(size, size), mode="nearest")[0]
    return mask * 2 - 1


class DiffusionTransform:
    """Rows -> model inputs; training flips (drawn from torch's RNG, which the loader seeds per batch)
    apply to the image and its mask together."""

    def __init__(
        self,
        info: DiffusionInfo,
        image_column: str,
        class_column: str | None,
        mask_column: str | None,
        flip: float = 0.0,
    ) -> None:
        self.info, self.image_column, self.class_column, self.mask_column, self.flip = (
            info,
            image_column,
            class_column,
            mask_column,
            flip,
        )

    def __call__(self, batch: dict[str, list]) -> dict[str, torch.Tensor]:
        size, channels = self.info.image_size, self.info.channels
        images, masks = [], []
        for k, value in enumerate(batch[self.image_column]):
            image = to_float(decode_image(value, channels))
            if self.mask_column:
                raw = decode_image(batch[self.mask_column][k], 1)
                if tuple(raw.shape[-2:]) != tuple(image.shape[-2:]):
                    where = image_name(batch[self.mask_column][k])
                    where = where if where != "<in-memory image>" else f"sample {batch[SAMPLE_ID][k]}"
                    raise DataError(
                        f"{where}: mask size {tuple(raw.shape[-2:])} differs from its image's "
                        f"{tuple(image.shape[-2:])}"
                    )
                masks.append(mask_tensor(raw, size, f"sample {batch[SAMPLE_ID][k]}"))
            images.append(resize_image(image, size) * 2 - 1)
        out = {
            "pixel_values": torch.stack(images),
            SAMPLE_ID: torch.as_tensor(batch[SAMPLE_ID], dtype=torch.long),
        }
        if masks:
            out["mask"] = torch.stack(masks)
        if self.class_column:
            out["class_labels"] = torch.as_tensor(batch[self.class_column], dtype=torch.long)
        if self.flip > 0:
            flip = (torch.rand(len(images)) < self.flip).view(-1, 1, 1, 1)
            for key in ("pixel_values", "mask"):
                if key in out:
                    out[key] = torch.where(flip, out[key].flip(-1), out[key])
        return out


def _column(
    split: datasets.Dataset, wanted: str | None, defaults: tuple[str, ...], what: str, key: str
) -> str:
    if wanted:
        if wanted not in split.column_names:
            raise DataError(
                f"[dataset] {key} = {wanted!r}: no such column (have {', '.join(split.column_names)})"
            )
        return wanted
    found = next((c for c in defaults if c in split.column_names), None)
    if found is None:
        raise DataError(
            f"[dataset] no {what} column ({' / '.join(defaults)}); set [dataset] {key} (have {', '.join(split.column_names)})"
        )
    return found


def _class_names(split: datasets.Dataset, column: str) -> list[str]:
    feature = split.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    values = sorted(set(split[column]))
    if values != list(range(len(values))):
        raise DataError(
            f"[dataset] class column {column!r}: values must be 0..N-1 class ids (found {values[:8]})"
        )
    return [str(v) for v in values]


def prepare(config) -> TaskData:
    """Load the source, split it, check its columns for the conditioning, attach the transforms."""
    cfg, training = config.dataset, config.training
    source = DATASETS.get(cfg.name)(cfg)
    splits = add_missing_splits(source.splits, cfg, config.basic.seed)
    train = splits["train"]
    image_column = _column(train, cfg.image_column, ("image", "img", "pixel_values"), "image", "image_column")
    class_column = mask_column = None
    class_names: list[str] = []
    if training.conditioning == "class":
        class_column = _column(train, cfg.class_column, ("label", "labels", "class"), "class", "class_column")
        class_names = _class_names(train, class_column)
    elif training.conditioning == "mask":
        mask_column = _column(
            train, cfg.mask_column, ("mask", "label", "segmentation"), "mask", "mask_column"
        )
    info = DiffusionInfo(
        cfg.image_size, cfg.channels or 3, training.conditioning, class_names, 1 if mask_column else 0
    )
    for name in list(splits):
        split = splits[name]
        splits[name] = split.add_column(SAMPLE_ID, list(range(len(split))))
        flip = config.augmentation.horizontal_flip if name == "train" else 0.0
        splits[name].set_transform(DiffusionTransform(info, image_column, class_column, mask_column, flip))
    report = {
        "dataset": {
            "name": cfg.name,
            "image_size": info.image_size,
            "conditioning": info.conditioning,
            "classes": class_names,
            "samples": {k: len(v) for k, v in splits.items()},
            "skipped": len(source.skipped),
        }
    }
    return TaskData(datasets.DatasetDict(splits), info, None, report)

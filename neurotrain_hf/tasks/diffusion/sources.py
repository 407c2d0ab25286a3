"""The diffusion task's datasets: embedded coloured shapes (classes) and vessel patches (masks), class
folders / Hub images, and image + mask folder pairs (the layout segmentation datasets use)."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource, register_dataset
from ...data.splits import load_hub, normalize_splits
from ...errors import DataError
from .synthetic import SHAPE_CLASSES, color_shapes, vessel_patches

HELD_OUT = 256  # valid / test images of the embedded sets
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm"}


def _array_split(columns: dict[str, np.ndarray], class_names: list[str] | None = None) -> datasets.Dataset:
    features = {}
    for name, values in columns.items():
        if name == "label":
            features[name] = datasets.ClassLabel(names=list(class_names or []))
        elif values.ndim == 4:
            features[name] = datasets.Array3D(shape=values.shape[1:], dtype="uint8")
        else:
            features[name] = datasets.Array2D(shape=values.shape[1:], dtype="uint8")
    return datasets.Dataset.from_dict(
        {k: list(v) if v.ndim > 1 else v for k, v in columns.items()}, features=datasets.Features(features)
    )


@register_dataset("color_shapes")
def color_shapes_source(cfg: DatasetConfig) -> DatasetSource:
    """Embedded 4-class coloured shapes (red circle, green square, blue triangle, yellow cross) at
    ``image_size``; train ``num_samples`` images, valid and test 256 each, drawn from separate seeds."""
    seed, size = cfg.sampling_seed, cfg.image_size
    splits = {}
    for offset, (split, count) in enumerate(
        (("train", cfg.num_samples), ("valid", HELD_OUT), ("test", HELD_OUT))
    ):
        images, labels = color_shapes(count, seed=seed * 1000 + offset, size=size)
        splits[split] = _array_split({"image": images, "label": labels}, list(SHAPE_CLASSES))
    return DatasetSource(datasets.DatasetDict(splits))


@register_dataset("vessel_patches")
def vessel_patches_source(cfg: DatasetConfig) -> DatasetSource:
    """Embedded retina-like patches with their vessel masks (mask-conditioned synthesis)."""
    seed, size = cfg.sampling_seed, cfg.image_size
    splits = {}
    for offset, (split, count) in enumerate(
        (("train", cfg.num_samples), ("valid", HELD_OUT), ("test", HELD_OUT))
    ):
        images, masks = vessel_patches(count, seed=seed * 1000 + offset, size=size)
        splits[split] = _array_split({"image": images, "mask": masks})
    return DatasetSource(datasets.DatasetDict(splits))


@register_dataset("image_classes")
def image_classes(cfg: DatasetConfig) -> DatasetSource:
    """Class folders ``root/[<split>/]<class>/<image>`` (MedNIST-style) or a Hub dataset (``hub_id``) with
    an image column and, for class conditioning, a class column."""
    if cfg.root is None:
        return DatasetSource(load_hub(cfg, None))
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"[dataset] root {str(root)!r}: folder not found")
    try:
        loaded = datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=cfg.cache_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(
            f"[dataset] root {str(root)!r}: no image files found ({str(exc).splitlines()[0]})"
        ) from None
    return DatasetSource(normalize_splits(loaded, str(root)))


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


@register_dataset("image_masks")
def image_masks(cfg: DatasetConfig) -> DatasetSource:
    """Image / mask pairs ``root/[<split>/]images/<name>.*`` and ``.../masks/<name>.*`` (matched by file stem,
    any case of extension); an image without a mask is one line naming it (or skipped and counted with
    ``skip_bad_samples``)."""
    if cfg.root is None:
        raise DataError("[dataset] image_masks: set root (a folder with images/ and masks/)")
    root = Path(cfg.root)
    tops = [
        root / s for s in ("train", "valid", "validation", "val", "test") if (root / s / "images").is_dir()
    ]
    if not tops and not (root / "images").is_dir():
        raise DataError(f"[dataset] root {str(root)!r}: no images/ folder (expected images/ and masks/)")
    splits, skipped = {}, []
    for top in tops or [root]:
        images, masks = _files(top / "images"), _files(top / "masks") if (top / "masks").is_dir() else {}
        rows: dict[str, list] = {"image": [], "mask": []}
        for stem, path in images.items():
            if stem not in masks:
                if not cfg.skip_bad_samples:
                    raise DataError(f"{path}: no mask with this name in {top / 'masks'}")
                skipped.append(str(path))
                continue
            rows["image"].append(str(path))
            rows["mask"].append(str(masks[stem]))
        features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image()})
        splits[top.name if tops else "train"] = datasets.Dataset.from_dict(rows, features=features)
    return DatasetSource(normalize_splits(datasets.DatasetDict(splits), str(root)), skipped=skipped)

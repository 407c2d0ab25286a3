"""Segmentation data: sources -> ``image``/``mask``/``fov`` splits, checked pairs, stats, joint transforms.

Sources (``sources.py``, ``synthetic.py``) give rows with ``image``, ``mask``, ``fov`` (or None),
``id`` and ``source``. File-based pairs are checked once before training: an unreadable file, an image
and mask (or FOV) of different sizes, or mask values outside the binary pair / the label set stop with
one line naming the file, or are skipped and counted with ``[dataset] skip_bad_samples``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import datasets
import numpy as np

from ...config.experiment import ExperimentConfig
from ...data.images import image_name, inspect_image, is_colour, open_image
from ...data.processor import NeuroImageProcessor, image_stats
from ...data.registry import DATASETS, DatasetSource
from ...data.splits import add_missing_splits
from ...errors import DataError
from ..base import TaskData
from . import sources as _sources  # noqa: F401  (registers the official layouts)
from . import synthetic as _synthetic  # noqa: F401  (registers synthetic_retina)
from . import synthetic_volumes as _synthetic_volumes  # noqa: F401  (registers synthetic_3d)
from . import volume_sources as _volume_sources  # noqa: F401  (registers btcv, brats, msd)
from .processor import NeuroSegmentationProcessor
from .transforms import SegmentationTransform, decode_mask

logger = logging.getLogger(__name__)
COLUMNS = ("image", "mask", "fov", "id", "source")


@dataclass
class SegmentationInfo:
    """What the model and the metrics need to know: head size (1 = binary sigmoid), channels, stats."""

    num_labels: int
    label_names: list[str]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sources: list[str]
    spatial_dims: int = 2
    regions: dict[str, list[int]] | None = None  # evaluation regions over the labels (BraTS ET/TC/WT)


def standardize(source: DatasetSource, name: str) -> datasets.DatasetDict:
    """Every split with the columns image, mask, fov, id, source (missing optional ones added)."""
    out = {}
    for split_name, split in source.splits.items():
        if "image" not in split.column_names:
            raise DataError(
                f"[dataset] {name}: split {split_name!r} has no image column ({', '.join(split.column_names)})"
            )
        n = len(split)
        for column, default in (("mask", None), ("fov", None), ("id", None), ("source", name)):
            if column not in split.column_names:
                values = [str(i) for i in range(n)] if column == "id" else [default] * n
                split = split.add_column(column, values)
        out[split_name] = split.select_columns(list(COLUMNS))
    return datasets.DatasetDict(out)


def _is_file_column(split: datasets.Dataset, column: str) -> bool:
    return isinstance(split.features[column], datasets.Image)


def _check_row(row: dict[str, Any], binary: bool, num_labels: int, sizes: dict) -> tuple[str, str] | None:
    """(file, reason) of the first problem in one file-based row, or None; records the image size."""
    info = inspect_image(row["image"])
    if info["error"]:
        return image_name(row["image"]), f"cannot read this image ({info['error']})"
    size = (info["width"], info["height"])
    sizes.setdefault(size, image_name(row["image"]))
    for column in ("mask", "fov"):
        value = row[column]
        if value is None:
            continue
        found = inspect_image(value)
        if found["error"]:
            return image_name(value), f"cannot read this {column} ({found['error']})"
        if (found["width"], found["height"]) != size:
            return image_name(value), (
                f"{column} is {found['width']}x{found['height']} but its image "
                f"{image_name(row['image'])} is {size[0]}x{size[1]}"
            )
        if column == "mask":
            values = np.unique(decode_mask(value, binary=False).numpy())
            if binary and len(values) > 2:
                shown = ", ".join(map(str, values[:6])) + (", ..." if len(values) > 6 else "")
                return image_name(value), (
                    f"mask has {len(values)} values ({shown}), not a binary pair; "
                    "for a label map set [model] num_labels"
                )
            if not binary and values.max(initial=0) >= num_labels:
                return image_name(value), f"label {int(values.max())} but [model] num_labels is {num_labels}"
    return None


def check_pairs(dsd: datasets.DatasetDict, config: ExperimentConfig, binary: bool, num_labels: int):
    """Refuse or skip bad file pairs; returns (splits, any colour image?, report, {size: first file})."""
    out, skipped, colour, sizes = {}, {}, None, {}
    for name, split in dsd.items():
        if not _is_file_column(split, "image"):
            out[name] = split
            continue
        bad, rows = [], split.with_format(None)
        for i in range(len(split)):
            row = rows[i]
            problem = _check_row(row, binary, num_labels, sizes)
            if problem is None:
                if colour is None or not colour:
                    with open_image(row["image"]) as image:
                        colour = bool(colour) or is_colour(image)
                continue
            if not config.dataset.skip_bad_samples:
                raise DataError(
                    f"{problem[0]}: {problem[1]}; fix or remove it, or set [dataset] skip_bad_samples = true"
                )
            logger.warning("skipped %s (%s)", *problem)
            bad.append(i)
            skipped.setdefault(name, []).append(problem[0])
        out[name] = split.select(np.setdiff1d(np.arange(len(split)), bad)) if bad else split
    report = {"skipped_samples": {k: len(v) for k, v in skipped.items()}, "skipped_files": skipped}
    return datasets.DatasetDict(out), colour, report, sizes


def check_sizes(sizes: dict[tuple[int, int], str], config: ExperimentConfig) -> None:
    """Images of several sizes: training needs patches or a resize; evaluation goes one image at a time."""
    aug = config.augmentation
    if len(sizes) < 2 or aug.resize:
        return
    (size_a, file_a), (size_b, file_b) = list(sizes.items())[:2]
    if not aug.random_crop:
        raise DataError(
            f"{file_a} is {size_a[0]}x{size_a[1]} but {file_b} is {size_b[0]}x{size_b[1]}: the images differ in "
            "size; set [augmentation] random_crop (patch training) or resize"
        )
    if config.training.per_device_eval_batch_size > 1:
        logger.warning("images differ in size (e.g. %s, %s): evaluating one image per batch", file_a, file_b)
        config.training.per_device_eval_batch_size = 1


def _channels(config: ExperimentConfig, colour: bool | None, train: datasets.Dataset) -> int:
    if config.dataset.channels:
        return config.dataset.channels
    if colour is not None:
        return 3 if colour else 1
    shape = train.features["image"].shape
    return 1 if len(shape) == 2 or shape[-1] in (1, 2) else 3


def prepare(config: ExperimentConfig) -> TaskData:
    """Build, check and split the configured dataset; attach the joint train/eval transforms."""
    cfg = config.dataset
    num_labels = config.model.num_labels or 1
    binary = num_labels == 1
    source = DATASETS.get(cfg.name)(cfg)
    if getattr(source, "volume", None) is not None:  # NIfTI volumes: the 3D path (same task, volume data)
        from .volume_data import prepare_volumes

        return prepare_volumes(config, source)
    dsd = standardize(source, cfg.name)
    dsd = datasets.DatasetDict({k: v for k, v in dsd.items() if k == "train" or len(v)})
    unlabeled = [
        k
        for k, v in dsd.items()
        if k != "train" and _is_file_column(v, "mask") and all(m is None for m in v.with_format(None)["mask"])
    ]
    for name in unlabeled:  # e.g. DRIVE's test set without its withheld annotations
        logger.warning(
            "[dataset] %s: the %s split has no annotations; it is split from train instead", cfg.name, name
        )
        del dsd[name]
    dsd, colour, report, sizes = check_pairs(dsd, config, binary, num_labels)
    check_sizes(sizes, config)
    dsd = add_missing_splits(dsd, cfg, config.basic.seed)
    if len(dsd["train"]) == 0:
        raise DataError(f"[dataset] {cfg.name}: the train split is empty")
    channels = _channels(config, colour, dsd["train"])
    plain = NeuroImageProcessor(num_channels=channels, size=config.augmentation.resize, do_normalize=False)
    mean, std = config.augmentation.mean or source.mean, config.augmentation.std or source.std
    if mean is None or std is None:
        mean, std = image_stats(dsd["train"], plain)
    processor = NeuroSegmentationProcessor(
        num_channels=channels,
        size=config.augmentation.resize,
        do_normalize=config.augmentation.normalize,
        image_mean=list(mean),
        image_std=list(std),
    )
    names = ["foreground"] if binary else [str(i) for i in range(num_labels)]
    sources = sorted({s for split in dsd.values() for s in split.with_format(None)["source"]})
    info = SegmentationInfo(num_labels, names, channels, tuple(mean), tuple(std), sources)
    columns = ["image", "mask", "fov"]
    if len(sources) > 1:  # per-source metrics need each sample's source as a number
        columns.append("source_index")
        dsd = datasets.DatasetDict(
            {
                k: v.map(
                    lambda batch: {"source_index": [sources.index(s) for s in batch["source"]]},
                    batched=True,
                    desc="source index",
                )
                for k, v in dsd.items()
            }
        )
    for name, split in dsd.items():
        transform = SegmentationTransform(processor, config.augmentation, binary, train=name == "train")
        split.set_transform(transform, columns=columns)  # fixed-shape columns: zero-copy batch reads
    report["dataset"] = {"name": cfg.name, **asdict(info), "samples": {k: len(v) for k, v in dsd.items()}}
    return TaskData(dsd, info, processor, report)

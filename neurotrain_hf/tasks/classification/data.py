"""Classification data: sources -> ``image``/``label`` splits, checked images, channels, stats, transforms.

Image files are checked once before splitting (``data.images.scan_images``, cached by ``datasets``):
an unreadable file stops with one line naming it, or is skipped and counted with
``[dataset] skip_bad_samples``. The channel count is decided for the whole dataset (``[dataset]
channels``, else RGB when any image is in colour), and every image is converted to it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import datasets
import numpy as np

from ...config.experiment import ExperimentConfig
from ...config.sections import DatasetConfig
from ...data.images import drop_unreadable
from ...data.processor import image_stats
from ...data.registry import DATASETS, DatasetSource
from ...data.splits import add_missing_splits
from ...data.transforms import ImageTransform, image_processor
from ...errors import DataError
from ..base import TaskData
from . import sources  # noqa: F401  (registers the classification datasets)

logger = logging.getLogger(__name__)


@dataclass
class ClassificationInfo:
    """What the model and the metrics need to know about the data."""

    num_labels: int
    label_names: list[str]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def standardize(source: DatasetSource, cfg: DatasetConfig) -> datasets.DatasetDict:
    """Select and rename the image/label columns; labels become a ``ClassLabel``, images stay undecoded."""
    image_col = cfg.image_column or source.image_column
    label_col = cfg.label_column or source.label_column
    out = {}
    for name, split in source.splits.items():
        missing = [c for c in (image_col, label_col) if c not in split.column_names]
        if missing:
            raise DataError(
                f"[dataset] {cfg.name}: split {name!r} has no column {missing[0]!r} "
                f"(columns: {', '.join(split.column_names)}); set image_column / label_column"
            )
        split = split.select_columns([image_col, label_col])
        if image_col != "image":
            split = split.rename_column(image_col, "image")
        if label_col != "label":
            split = split.rename_column(label_col, "label")
        if not isinstance(split.features["label"], datasets.ClassLabel):
            split = split.class_encode_column("label")
        if isinstance(split.features["image"], datasets.Image):
            split = split.cast_column("image", datasets.Image(decode=False))
        out[name] = split
    return datasets.DatasetDict(out)


def _size_error(rows: list[tuple[str, int, int]]) -> DataError:
    (fa, wa, ha), (fb, wb, hb) = rows
    return DataError(
        f"{fa} is {wa}x{ha} but {fb} is {wb}x{hb}: the images differ in size; set [augmentation] resize"
    )


def check_images(
    dsd: datasets.DatasetDict, config: ExperimentConfig
) -> tuple[datasets.DatasetDict, bool | None, dict[str, Any]]:
    """Drop or refuse unreadable files, check sizes; returns (splits, any colour image?, report)."""
    cfg = config.dataset
    out, colour, skipped, first_size = {}, None, {}, None
    for name, split in dsd.items():
        if not isinstance(split.features["image"], datasets.Image) or len(split) == 0:
            out[name] = split
            continue
        split, scan, files = drop_unreadable(split, name, cfg.skip_bad_samples)
        if files:
            skipped[name] = files
        colour = bool(colour) or any(scan["colour"])
        if not config.augmentation.resize:
            sizes = np.stack([scan["width"], scan["height"]], axis=1)
            if first_size is None and len(sizes):
                first_size = (scan[0]["file"], int(sizes[0, 0]), int(sizes[0, 1]))
            if first_size is not None:
                differ = np.flatnonzero((sizes != np.array(first_size[1:])).any(axis=1))
                if len(differ):
                    row = scan[int(differ[0])]
                    raise _size_error([first_size, (row["file"], row["width"], row["height"])])
        out[name] = split
    report = {"skipped_samples": {k: len(v) for k, v in skipped.items()}, "skipped_files": skipped}
    return datasets.DatasetDict(out), colour, report


def array_channels(split: datasets.Dataset) -> int:
    """Channels of a fixed-shape image column (HW or HWC)."""
    shape = split.features["image"].shape
    return 1 if len(shape) == 2 or shape[-1] in (1, 2) else 3


def prepare(config: ExperimentConfig) -> TaskData:
    """Build, check and split the configured dataset; attach the train/eval transforms."""
    cfg = config.dataset
    source = DATASETS.get(cfg.name)(cfg)
    dsd, colour, report = check_images(standardize(source, cfg), config)
    dsd = add_missing_splits(dsd, cfg, config.basic.seed, stratify_by="label")
    if len(dsd["train"]) == 0:
        raise DataError(f"[dataset] {cfg.name}: the train split is empty")
    channels = cfg.channels or (3 if colour else 1 if colour is not None else array_channels(dsd["train"]))
    label = dsd["train"].features["label"]
    mean, std = config.augmentation.mean or source.mean, config.augmentation.std or source.std
    if mean is None or std is None:
        mean, std = image_stats(dsd["train"], image_processor(config.augmentation, channels, [0.0], [1.0]))
    if len(mean) != channels or len(std) != channels:
        raise DataError(f"[augmentation] mean/std have {len(mean)} values for {channels}-channel images")
    info = ClassificationInfo(label.num_classes, list(label.names), channels, tuple(mean), tuple(std))
    processor = image_processor(config.augmentation, channels, info.mean, info.std)
    for name, split in dsd.items():
        split.set_transform(ImageTransform(processor, config.augmentation, train=name == "train"))
    report["dataset"] = {"name": cfg.name, **asdict(info), "samples": {k: len(v) for k, v in dsd.items()}}
    return TaskData(dsd, info, processor, report)

"""NeuroTrain's data entry points: ``get_dataset``, per-split getters, ``random_sample`` and dataloaders.

Each returns ``datasets`` objects: a ``DatasetDict`` with ``train``/``valid``/``test`` splits whose
columns are ``image`` and ``label`` (a ``ClassLabel``), with the ``[augmentation]`` transform attached
by ``set_transform`` (random operations on ``train`` only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import datasets
import numpy as np

from ..config.experiment import ExperimentConfig
from ..config.sections import DatasetConfig
from ..errors import DataError
from .loader import make_dataloader
from .registry import DATASETS, DatasetSource
from .transforms import ImageBatchTransform, stack_images

SPLITS = ("train", "valid", "test")
logger = logging.getLogger(__name__)


@dataclass
class DatasetInfo:
    """What a model and the metrics need to know about the data."""

    num_labels: int
    label_names: list[str]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _standardize(source: DatasetSource, cfg: DatasetConfig) -> datasets.DatasetDict:
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
        out[name] = split
    return datasets.DatasetDict(out)


def _split(dsd: datasets.DatasetDict, cfg: DatasetConfig, seed: int) -> datasets.DatasetDict:
    """Add missing valid/test splits by stratified splitting of train."""
    out = dict(dsd)
    for target, ratio in (("test", cfg.test_ratio), ("valid", cfg.valid_ratio)):
        if target in out or ratio <= 0:
            continue
        try:
            parts = out["train"].train_test_split(test_size=ratio, seed=seed, stratify_by_column="label")
        except ValueError as exc:  # too few samples per class to stratify
            logger.warning("[dataset] %s: %s split not stratified (%s)", cfg.name, target, exc)
            parts = out["train"].train_test_split(test_size=ratio, seed=seed)
        out["train"], out[target] = parts["train"], parts["test"]
    if cfg.max_samples:
        out = {k: v.select(range(min(cfg.max_samples, len(v)))) for k, v in out.items()}
    return datasets.DatasetDict({k: out[k] for k in SPLITS if k in out})


def _stats(train: datasets.Dataset, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of (up to 2,000 of) the training images."""
    sample = train.with_format("numpy")[: min(len(train), 2000)]["image"]
    x = stack_images(sample)
    if not hasattr(x, "mean"):
        return (0.5,) * channels, (0.5,) * channels
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()
    return tuple(mean), tuple(std)


def _channels(split: datasets.Dataset) -> int:
    image = split.with_format("numpy")[0]["image"] if len(split) else None
    if image is None:
        raise DataError("the train split is empty")
    arr = np.asarray(image)
    return 1 if arr.ndim == 2 else int(arr.shape[-1])


def load_splits(config: ExperimentConfig) -> tuple[datasets.DatasetDict, DatasetInfo]:
    """Build, standardize and split the configured dataset; transforms are not attached yet."""
    cfg = config.dataset
    source = DATASETS.get(cfg.name)(cfg)
    dsd = _split(_standardize(source, cfg), cfg, config.basic.seed)
    label = dsd["train"].features["label"]
    channels = _channels(dsd["train"])
    if channels == 4:
        channels = 3  # RGBA/CMYK images are converted to RGB by the transform
    mean, std = config.augmentation.mean or source.mean, config.augmentation.std or source.std
    if mean is None or std is None:
        mean, std = _stats(dsd["train"], channels)
    info = DatasetInfo(label.num_classes, list(label.names), channels, tuple(mean), tuple(std))
    if len(info.mean) != channels or len(info.std) != channels:
        raise DataError(f"[augmentation] mean/std have {len(info.mean)} values for {channels}-channel images")
    return dsd, info


def attach_transforms(dsd: datasets.DatasetDict, config: ExperimentConfig, info: DatasetInfo) -> None:
    for name, split in dsd.items():
        split.set_transform(
            ImageBatchTransform(config.augmentation, info.mean, info.std, train=name == "train")
        )


def get_dataset(config: ExperimentConfig) -> datasets.DatasetDict:
    """All splits with transforms attached; ``dataset_info`` (``neurotrain_info``) rides along."""
    dsd, info = load_splits(config)
    attach_transforms(dsd, config, info)
    dsd.neurotrain_info = info  # type: ignore[attr-defined]
    return dsd


def dataset_info(dsd: datasets.DatasetDict) -> DatasetInfo:
    return dsd.neurotrain_info  # type: ignore[attr-defined]


def _get_split(config: ExperimentConfig, split: str) -> datasets.Dataset:
    dsd = get_dataset(config)
    if split not in dsd:
        raise DataError(f"[dataset] {config.dataset.name}: no {split!r} split (have {', '.join(dsd)})")
    return dsd[split]


def get_train_dataset(config: ExperimentConfig) -> datasets.Dataset:
    return _get_split(config, "train")


def get_valid_dataset(config: ExperimentConfig) -> datasets.Dataset:
    return _get_split(config, "valid")


def get_test_dataset(config: ExperimentConfig) -> datasets.Dataset:
    return _get_split(config, "test")


def random_sample(dataset: datasets.Dataset, n: int, seed: int | None = None) -> datasets.Dataset:
    """``n`` samples drawn without replacement (all of them if the dataset is smaller)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    return dataset.select(sorted(idx.tolist()))


def get_train_valid_test_dataloader(config: ExperimentConfig):
    """(train, valid, test) DataLoaders (None for a missing split) with batched Arrow fetches."""
    dsd = get_dataset(config)
    args = config.training
    loaders = []
    for name in SPLITS:
        if name not in dsd:
            loaders.append(None)
            continue
        bs = args.per_device_train_batch_size if name == "train" else args.per_device_eval_batch_size
        loaders.append(
            make_dataloader(
                dsd[name],
                bs,
                shuffle=name == "train",
                seed=config.basic.seed,
                num_workers=args.dataloader_num_workers,
            )
        )
    return tuple(loaders)

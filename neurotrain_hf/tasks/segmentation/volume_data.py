"""3D segmentation data: volume sources -> checked, fingerprinted, preprocessed and cached splits.

Rows hold the file paths plus header metadata (shape, spacing, orientation). Before training every
case is read once: unreadable or truncated NIfTI, an image and label of different shapes or affines,
a label value outside the dataset's set stop with one line naming the file (or are skipped and
counted with ``[dataset] skip_bad_samples``). The training cases' fingerprint fixes the default
spacing and normalisation; each case is preprocessed once into the cache (``volume_cache``).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets

from ...config.experiment import ExperimentConfig
from ...data.registry import DatasetSource
from ...data.splits import add_missing_splits
from ...errors import ConfigError, DataError
from ..base import TaskData
from .fingerprint import load_or_compute
from .nifti import header_info
from .volume_cache import cache_root, cached_case
from .volume_processor import NeuroVolumeProcessor
from .volume_spec import VolumeSpec
from .volume_transforms import VolumeTrainTransform, eval_transform, patch_size

logger = logging.getLogger(__name__)


def _skip_or_raise(config: ExperimentConfig, exc: DataError, skipped: dict, split: str) -> None:
    if not config.dataset.skip_bad_samples:
        raise DataError(f"{exc}; fix or remove it, or set [dataset] skip_bad_samples = true") from None
    logger.warning("skipped: %s", exc)
    skipped.setdefault(split, []).append(str(exc).split(":")[0])


def _keep(split: datasets.Dataset, rows: list[int]) -> datasets.Dataset:
    return split if len(rows) == len(split) else split.select(rows)


def with_headers(dsd: datasets.DatasetDict, config: ExperimentConfig, skipped: dict) -> datasets.DatasetDict:
    """Add shape/spacing/orientation columns from the headers; unreadable files are refused or skipped."""
    out = {}
    for name, split in dsd.items():
        keep, infos = [], []
        for i, row in enumerate(split.with_format(None)):
            try:
                infos.append(header_info(row["image"]))
                keep.append(i)
            except DataError as exc:
                _skip_or_raise(config, exc, skipped, name)
        split = _keep(split, keep)
        for key in ("shape", "spacing", "orientation"):
            split = split.add_column(key, [info[key] for info in infos])
        out[name] = split
    return datasets.DatasetDict(out)


def make_processor(config: ExperimentConfig, spec: VolumeSpec, fingerprint: dict) -> NeuroVolumeProcessor:
    """Spacing and normalisation from ``[dataset]``, defaulting to the fingerprint's (nnU-Net's rules)."""
    cfg = config.dataset
    scheme = (
        cfg.intensity if cfg.intensity != "auto" else ("ct" if spec.modality.upper() == "CT" else "zscore")
    )
    stats = [fingerprint["intensity"][c] for c in spec.channel_names]
    kwargs: dict[str, Any] = {}
    if scheme == "ct":
        kwargs = {
            "clip_low": [s["percentile_00_5"] for s in stats],
            "clip_high": [s["percentile_99_5"] for s in stats],
            "intensity_mean": [s["mean"] for s in stats],
            "intensity_std": [s["std"] for s in stats],
        }
    elif scheme == "window":
        if not cfg.intensity_window or len(cfg.intensity_window) != 2:
            raise ConfigError('[dataset] intensity = "window" needs intensity_window = [low, high]')
        low, high = cfg.intensity_window
        kwargs = {"clip_low": [low] * len(stats), "clip_high": [high] * len(stats)}
    spacing = cfg.spacing or fingerprint["median_spacing"]
    if len(spacing) != 3:
        raise ConfigError(f"[dataset] spacing must have 3 values (x, y, z), got {spacing}")
    return NeuroVolumeProcessor(
        num_channels=len(spec.channel_names),
        channel_names=spec.channel_names,
        spacing=[round(float(s), 4) for s in spacing],
        intensity=scheme,
        **kwargs,
    )


def cache_cases(
    dsd: datasets.DatasetDict,
    config: ExperimentConfig,
    processor: NeuroVolumeProcessor,
    spec: VolumeSpec,
    skipped: dict,
) -> tuple[datasets.DatasetDict, dict[str, int]]:
    """Preprocess every case into the cache (reusing entries); adds the ``cache`` column."""
    root = cache_root(config.dataset.preprocessed_dir)
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="neurotrain-volumes-"))
    counts = {"reused": 0, "written": 0}
    out = {}
    for name, split in dsd.items():
        keep, folders = [], []
        for i, row in enumerate(split.with_format(None)):
            try:
                folder, reused = cached_case(row, processor, spec, root)
            except DataError as exc:
                _skip_or_raise(config, exc, skipped, name)
                continue
            counts["reused" if reused else "written"] += 1
            keep.append(i)
            folders.append(str(folder))
        out[name] = _keep(split, keep).add_column("cache", folders)
    return datasets.DatasetDict(out), {**counts, "folder": str(root)}


def prepare_volumes(config: ExperimentConfig, source: DatasetSource) -> TaskData:
    """Split, check, fingerprint and cache a volume source; attach the 3D transforms."""
    from accelerate import PartialState

    from .data import SegmentationInfo

    cfg, spec = config.dataset, source.volume
    skipped: dict[str, list[str]] = {}
    for path in source.skipped:
        skipped.setdefault("train", []).append(path)
    dsd = datasets.DatasetDict({k: v for k, v in source.splits.items() if len(v)})
    for name in [k for k, v in dsd.items() if k != "train" and all(m is None for m in v["mask"])]:
        logger.warning(
            "[dataset] %s: the %s split has no labels; it is split from train instead", cfg.name, name
        )
        del dsd[name]
    dsd = add_missing_splits(dsd, cfg, config.basic.seed)
    if len(dsd["train"]) == 0:
        raise DataError(f"[dataset] {cfg.name}: the train split is empty")
    with PartialState().main_process_first():  # one process preprocesses, the others reuse its cache
        dsd = with_headers(dsd, config, skipped)
        train = dsd["train"].with_format(None)
        labelled = [i for i, m in enumerate(train["mask"]) if m]
        if not labelled:
            raise DataError(f"[dataset] {cfg.name}: no labelled training volumes")
        bad: list[int] = []

        def refuse_or_skip(exc: DataError, index: int) -> None:
            _skip_or_raise(config, exc, skipped, "train")
            bad.append(labelled[index])

        rows = [train[i] for i in labelled]
        fingerprint, _ = load_or_compute(rows, spec, cache_root(cfg.preprocessed_dir), refuse_or_skip)
        if bad:
            dsd["train"] = dsd["train"].select([i for i in range(len(train)) if i not in set(bad)])
        processor = make_processor(config, spec, fingerprint)
        dsd, counts = cache_cases(dsd, config, processor, spec, skipped)
    binary = config.model.num_labels == 1
    if binary and spec.num_labels != 2:
        raise ConfigError(
            f"[model] num_labels = 1 (a sigmoid head) needs a 2-label dataset; {cfg.name} has {spec.num_labels}"
        )
    names = ["foreground"] if binary else list(spec.label_names)
    sources = sorted(set(dsd["train"]["source"]))
    info = SegmentationInfo(
        1 if binary else spec.num_labels,
        names,
        len(spec.channel_names),
        (0.0,) * len(spec.channel_names),
        (1.0,) * len(spec.channel_names),
        sources,
        spatial_dims=3,
        regions=spec.regions,
    )
    config.training.per_device_eval_batch_size = 1  # whole volumes of different shapes
    for name, split in dsd.items():
        if name == "train":
            split.set_transform(
                VolumeTrainTransform(config.augmentation, cfg.crop_foreground), columns=["cache"]
            )
        else:
            split.set_transform(eval_transform, columns=["cache"])
    report = {
        "skipped_samples": {k: len(v) for k, v in skipped.items()},
        "skipped_files": skipped,
        "preprocessed": counts,
        "fingerprint": {k: fingerprint[k] for k in ("cases", "modality", "median_spacing", "median_shape")},
        "patch_size": patch_size(config.augmentation),
        "dataset": {"name": cfg.name, **asdict(info), "samples": {k: len(v) for k, v in dsd.items()}},
    }
    return TaskData(dsd, info, processor, report, files={"fingerprint.json": fingerprint})

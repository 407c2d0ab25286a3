"""``HybridDataset``: several registered datasets in one run (e.g. DRIVE + CHASE_DB1 + STARE).

Each source is built by its own builder and split on its own (so oversampling can never leak a training
image into validation), then the splits are combined: training by ``datasets.interleave_datasets``
with probabilities from the weights (``weighted``) or equal (``balanced``), until every source is
exhausted, reproducible with ``[dataset] sampling_seed``; or all samples in the listed order with
duplicate ids dropped (``priority``: e.g. ISIC 2017 images that reappear in ISIC 2018). Evaluation
splits are concatenated. Every row keeps its ``source`` (the table key) for per-source metrics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import datasets

from ..config.fields import ChannelFields, ColumnFields, HybridFields
from ..config.sections import DatasetConfig
from ..errors import DataError
from .registry import DATASETS, DatasetSource, register_dataset
from .splits import SPLITS, add_missing_splits

HYBRID_KEYS = {f.name for f in dataclasses.fields(HybridFields)}


@dataclass
class HybridConfig(HybridFields, ChannelFields, ColumnFields, DatasetConfig):
    """A ``[dataset]`` of image sources mixed outside an experiment (``HybridDataset``)."""


def _source_config(cfg: DatasetConfig, alias: str, options: dict) -> tuple[DatasetConfig, float]:
    options = dict(options)
    weight = float(options.pop("weight", 1.0))
    keys = {f.name for f in dataclasses.fields(cfg)} - HYBRID_KEYS
    unknown = sorted(set(options) - keys)
    if unknown:
        raise DataError(
            f"[dataset.sources.{alias}] unknown keys {unknown}; allowed: weight, {', '.join(sorted(keys))}"
        )
    if weight <= 0:
        raise DataError(f"[dataset.sources.{alias}] weight must be > 0 (got {weight})")
    fields = {"name": alias, **options, "sources": {}}
    return dataclasses.replace(cfg, **fields), weight


def _tag(split: datasets.Dataset, alias: str) -> datasets.Dataset:
    if "source" in split.column_names:
        split = split.remove_columns("source")
    return split.add_column("source", [alias] * len(split))


def _dedup(parts: list[datasets.Dataset]) -> datasets.Dataset:
    """Concatenate in order; a row whose ``id`` an earlier part already had is dropped."""
    seen: set[str] = set()
    kept = []
    for part in parts:
        ids = part["id"] if "id" in part.column_names else [None] * len(part)
        rows = [i for i, sample in enumerate(ids) if sample is None or sample not in seen]
        seen.update(s for s in ids if s is not None)
        kept.append(part.select(rows) if len(rows) < len(part) else part)
    return datasets.concatenate_datasets(kept)


@register_dataset("hybrid")
def hybrid(cfg: DatasetConfig) -> DatasetSource:
    """Several datasets mixed by weight, balanced, or in priority order (``[dataset] sources``)."""
    if not isinstance(cfg, HybridFields):
        raise DataError(
            "[dataset] name = 'hybrid': this task does not mix datasets (its [dataset] has no sources)"
        )
    if not cfg.sources:
        raise DataError(
            "[dataset] hybrid: list the datasets in [dataset] sources = { name = { root = ... } }"
        )
    parts = []
    for alias, options in cfg.sources.items():
        sub, weight = _source_config(cfg, alias, options)
        source = DATASETS.get(sub.name)(sub)
        stratify = "label" if "label" in source.splits["train"].column_names else None
        splits = add_missing_splits(source.splits, sub, cfg.sampling_seed, stratify_by=stratify)
        parts.append((alias, weight, {k: _tag(v, alias) for k, v in splits.items()}))
    out = {}
    try:
        for split in SPLITS:
            present = [(w, p[split]) for _, w, p in parts if split in p and len(p[split])]
            if not present:
                continue
            sets = [d for _, d in present]
            if split != "train" or cfg.sampling == "priority" or len(sets) == 1:
                out[split] = (
                    _dedup(sets) if cfg.sampling == "priority" else datasets.concatenate_datasets(sets)
                )
                continue
            weights = [w for w, _ in present] if cfg.sampling == "weighted" else [1.0] * len(present)
            probabilities = [w / sum(weights) for w in weights]
            out[split] = datasets.interleave_datasets(
                sets, probabilities=probabilities, seed=cfg.sampling_seed, stopping_strategy="all_exhausted"
            )
    except ValueError as exc:  # features that cannot be combined (e.g. arrays with files)
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"[dataset] hybrid: the sources cannot be combined ({first})") from None
    return DatasetSource(datasets.DatasetDict(out))


class HybridDataset:
    """The original NeuroTrain entry point: ``HybridDataset(sources, sampling, seed)[split]``.

    ``sources`` maps a name to ``[dataset]`` options of one registered dataset (plus ``weight``); the
    mixed splits are the same as ``[dataset] name = "hybrid"`` gives in a config.
    """

    def __init__(
        self, sources: dict[str, dict], sampling: str = "weighted", seed: int = 0, **options
    ) -> None:
        self.config = HybridConfig(
            name="hybrid", sources=sources, sampling=sampling, sampling_seed=seed, **options
        )
        self.splits = hybrid(self.config).splits

    def __getitem__(self, split: str) -> datasets.Dataset:
        return self.splits[split]

    def __iter__(self):
        return iter(self.splits)

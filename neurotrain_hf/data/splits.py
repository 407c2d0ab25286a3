"""Split handling every task shares: split-name aliases, Hub/local loading, missing valid/test splits."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets

from ..config.sections import DatasetConfig
from ..errors import DataError

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {
    "validation": "valid",
    "val": "valid",
    "dev": "valid",
    "valid": "valid",
    "train": "train",
    "test": "test",
}
logger = logging.getLogger(__name__)


def normalize_splits(dsd: datasets.DatasetDict, source: str) -> datasets.DatasetDict:
    """Rename ``validation``/``val``/``dev`` to ``valid``; other splits are dropped; train is required."""
    out = {}
    for name, split in dsd.items():
        key = SPLIT_ALIASES.get(name)
        if key is None:
            continue
        if key in out:
            raise DataError(f"{source}: two splits map to {key!r} ({', '.join(dsd)})")
        out[key] = split
    if "train" not in out:
        raise DataError(f"{source}: no train split found (splits: {', '.join(dsd) or 'none'})")
    return datasets.DatasetDict(out)


def load_hub(cfg: DatasetConfig, default_id: str | None) -> datasets.DatasetDict:
    """Load from the Hub id (or a local dataset folder) with ``datasets``."""
    hub_id = cfg.hub_id or default_id
    if not hub_id:
        raise DataError(f"[dataset] {cfg.name}: set root (local files) or hub_id")
    path = Path(hub_id)
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(hub_id, revision=cfg.revision, cache_dir=cfg.cache_dir)
    except (FileNotFoundError, ConnectionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"[dataset] hub_id {hub_id!r}: {first}") from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return normalize_splits(loaded, f"[dataset] hub_id {hub_id!r}")


def add_missing_splits(
    dsd: datasets.DatasetDict, cfg: DatasetConfig, seed: int, stratify_by: str | None = None
) -> datasets.DatasetDict:
    """Split missing valid/test sets off train (stratified when possible), then apply ``max_samples``."""
    out = dict(dsd)
    for target, ratio in (("test", cfg.test_ratio), ("valid", cfg.valid_ratio)):
        if target in out or ratio <= 0:
            continue
        try:
            parts = out["train"].train_test_split(test_size=ratio, seed=seed, stratify_by_column=stratify_by)
        except ValueError as exc:  # too few samples per class to stratify
            if stratify_by is not None:
                logger.warning("[dataset] %s: %s split not stratified (%s)", cfg.name, target, exc)
            try:
                parts = out["train"].train_test_split(test_size=ratio, seed=seed)
            except ValueError:
                raise DataError(
                    f"[dataset] {cfg.name}: {len(out['train'])} training sample(s) cannot give a {target} split of "
                    f"{ratio}; lower [dataset] {target}_ratio or add data"
                ) from None
        out["train"], out[target] = parts["train"], parts["test"]
    if cfg.max_samples:
        out = {k: v.select(range(min(cfg.max_samples, len(v)))) for k, v in out.items()}
    return datasets.DatasetDict({k: out[k] for k in SPLITS if k in out})

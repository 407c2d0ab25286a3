"""The ``parquet`` dataset: a folder (``root``) or Hub repo (``hub_id``) written by ``neurotrain to-parquet``.

Its layout is the Hub's: ``data/<split>-00000-of-0000N.parquet`` shards with images embedded and a
``README.md`` whose front matter lists the splits (``configs``), the features (``dataset_info``) and, under
``neurotrain``, what the source builder returned beside its rows (class, mean/std, categories, ...) and
each split's original features. Reading it back gives every task the source it was exported from, row
for row; a parquet dataset without that key (any Hub-style dataset) loads as plain splits.
"""

from __future__ import annotations

import dataclasses
import glob
import json
from pathlib import Path
from typing import Any

import datasets

from ..config.sections import DatasetConfig
from ..errors import DataError, first_line
from .registry import DatasetSource, register_dataset
from .splits import load_hub

CARD_KEY = "neurotrain"  # the README front-matter key holding the source's own fields
DATA_DIR = "data"


def decoded_features(features: datasets.Features) -> datasets.Features:
    """The same features with every ``Image(decode=False)`` decoding (what ``load_dataset`` users want);
    the Arrow storage is unchanged."""

    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: visit(v) for k, v in node.items()}
            if node.get("_type") == "Image":
                node["decode"] = True
            return node
        if isinstance(node, list):
            return [visit(v) for v in node]
        return node

    return datasets.Features.from_dict(visit(features.to_dict()))


def source_class(name: str) -> type[DatasetSource]:
    """The loaded ``DatasetSource`` subclass named ``module.QualName`` (never imported from the card: the
    task's own modules define it), else ``DatasetSource``."""
    todo, seen = [DatasetSource], set()
    while todo:
        cls = todo.pop()
        if f"{cls.__module__}.{cls.__qualname__}" == name:
            return cls
        seen.add(cls)
        todo.extend(c for c in cls.__subclasses__() if c not in seen)
    return DatasetSource


def read_card(cfg: DatasetConfig, where: str) -> dict[str, Any] | None:
    """The README front matter of the folder or repo (None without a README)."""
    from huggingface_hub import DatasetCard

    if cfg.root is not None:
        readme = Path(cfg.root) / "README.md"
        if not readme.is_file():
            return None
        text = readme.read_text(encoding="utf-8")
    else:
        from huggingface_hub import hf_hub_download

        try:
            text = Path(
                hf_hub_download(
                    cfg.hub_id,
                    "README.md",
                    repo_type="dataset",
                    revision=cfg.revision,
                    cache_dir=cfg.cache_dir,
                )
            ).read_text(encoding="utf-8")
        except Exception as exc:  # noqa: BLE001 - a missing card or repo is one line
            if type(exc).__name__ == "EntryNotFoundError":
                return None
            raise DataError(f"[dataset] {where}: cannot read its README.md ({first_line(exc)})") from None
    try:
        return DatasetCard(text).data.to_dict()
    except Exception as exc:  # noqa: BLE001 - malformed front matter
        raise DataError(f"[dataset] {where}: README.md front matter unreadable ({first_line(exc)})") from None


def _patterns(card: dict[str, Any], split: str) -> list[str]:
    """The split's file patterns in the card's default config (``data/<split>-*`` when it names none)."""
    configs = card.get("configs") or [{}]
    entries = next((c for c in configs if c.get("config_name", "default") == "default"), configs[0])
    patterns = [e["path"] for e in entries.get("data_files", []) if e.get("split") == split]
    return [p for item in patterns for p in ([item] if isinstance(item, str) else item)] or [
        f"{DATA_DIR}/{split}-*"
    ]


def _load_split(
    cfg: DatasetConfig, card: dict[str, Any], split: str, features: datasets.Features, where: str
) -> datasets.Dataset:
    """One split's shards with its original features (only this split's files are read)."""
    patterns = _patterns(card, split)
    if cfg.root is not None:
        files = sorted(
            f for p in patterns for f in glob.glob(str(Path(cfg.root) / p)) if f.endswith(".parquet")
        )
        if not files:
            raise DataError(
                f"[dataset] {where}: no parquet files for split {split!r} ({', '.join(patterns)})"
            )
        path, data_files, revision = "parquet", {split: files}, None
    else:
        path, data_files, revision = cfg.hub_id, {split: patterns}, cfg.revision
    try:
        return datasets.load_dataset(
            path,
            data_files=data_files,
            split=split,
            features=features,
            revision=revision,
            cache_dir=cfg.cache_dir,
        )
    except (FileNotFoundError, ConnectionError, ValueError, TypeError) as exc:
        raise DataError(f"[dataset] {where}: cannot read split {split!r} ({first_line(exc)})") from None


@register_dataset("parquet")
def parquet(cfg: DatasetConfig) -> DatasetSource:
    """A ``neurotrain to-parquet`` folder (``root``) or pushed repo (``hub_id``): the exported source, row for
    row; any other parquet / Hub-style dataset loads as plain splits."""
    if cfg.root is None and not cfg.hub_id:
        raise DataError("[dataset] parquet: set root (a folder written by `neurotrain to-parquet`) or hub_id")
    where = f"root {cfg.root!r}" if cfg.root is not None else f"hub_id {cfg.hub_id!r}"
    if cfg.root is not None and not Path(cfg.root).is_dir():
        raise DataError(f"[dataset] parquet: {where}: folder not found")
    card = read_card(cfg, where)
    meta = (card or {}).get(CARD_KEY)
    splits: dict[str, datasets.Dataset] = {}
    if cfg.streaming:  # the first train rows and valid/test; the runner streams the train split
        from .shards import load_splits

        splits = dict(load_splits(cfg))
    if not isinstance(meta, dict) or not isinstance(meta.get("splits"), dict):
        return DatasetSource(datasets.DatasetDict(splits) if cfg.streaming else load_hub(cfg, cfg.root))
    for split, info in meta["splits"].items() if not cfg.streaming else ():
        features = datasets.Features.from_dict(json.loads(info["features"]))
        splits[split] = _load_split(cfg, card, split, features, where)
    cls = source_class(str(meta.get("source_class", "")))
    fields = dict(meta.get("source_fields") or {})
    names = {f.name for f in dataclasses.fields(cls)} - {"splits"}
    source = cls(datasets.DatasetDict(splits), **{k: v for k, v in fields.items() if k in names})
    for key, value in fields.items():  # fields of a subclass not loaded here stay readable as attributes
        if key not in names:
            setattr(source, key, value)
    return source


def source_fields(source: DatasetSource, name: str) -> dict[str, Any]:
    """What a builder returned beside its splits, as JSON (a field that is not JSON is a one-line error)."""
    out = {}
    for f in dataclasses.fields(source):
        if f.name == "splits":
            continue
        value = getattr(source, f.name)
        try:
            out[f.name] = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            raise DataError(
                f"[dataset] {name}: its source keeps {f.name!r} ({type(value).__name__}) beside the rows, which a "
                "parquet file cannot hold (e.g. 3D volumes stay files); only table datasets convert"
            ) from None
    return out

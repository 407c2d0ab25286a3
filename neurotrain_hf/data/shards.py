"""The train split's shard files for ``[dataset] streaming``: where they are, how many rows each holds.

Parquet row counts come from the file footers and WebDataset counts from the tar headers (one sequential
pass that reads only the small ``.cls`` members), so the epoch length is known before training starts and
a corrupt shard is named in one line before any step runs. The splits the task prepares from are the
first rows of the train split (``HEAD_ROWS``: label names, channels, statistics) and the source's own
valid/test splits, read map-style.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tarfile
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import datasets

from ..config.sections import DatasetConfig
from ..errors import DataError, first_line
from .registry import DatasetSource, register_dataset
from .splits import SPLIT_ALIASES, normalize_splits

HEAD_ROWS = 512  # rows of the train split the task prepares from (labels, channels, mean/std)
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif", "ppm", "pgm")
WDS_META = ("__key__", "__url__")


@dataclass
class TrainShards:
    """The train split's files in a fixed order, their row counts and the ``datasets`` builder reading them."""

    kind: str  # "parquet" or "webdataset"
    files: list[str]
    rows: list[int]
    features: datasets.Features | None = None
    labels: set[int] = field(default_factory=set)  # WebDataset ``.cls`` values seen while counting

    @property
    def total(self) -> int:
        """Rows in all shards."""
        return sum(self.rows)

    def digest(self) -> str:
        """Files and row counts: a resumed run must stream the same shards."""
        text = "\n".join(f"{Path(f).name}\t{n}" for f, n in zip(self.files, self.rows))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _where(cfg: DatasetConfig) -> str:
    return f"root {cfg.root!r}" if cfg.root is not None else f"hub_id {cfg.hub_id!r}"


def resolve_files(cfg: DatasetConfig) -> tuple[str, dict[str, list[str]], datasets.Features | None]:
    """(builder kind, files per split, features) of the configured folder or Hub repo.

    A ``neurotrain to-parquet`` folder's card names its split patterns and features; anything else is
    resolved the way ``load_dataset`` resolves it (``data/<split>-*`` files, ``<split>-*.tar``)."""
    from .parquet import CARD_KEY, _patterns, read_card

    path = cfg.root if cfg.root is not None else cfg.hub_id
    if not path:
        raise DataError(f"[dataset] {cfg.name}: streaming needs root (a local folder) or hub_id")
    if cfg.root is not None and not Path(cfg.root).is_dir():
        raise DataError(f"[dataset] {cfg.name}: {_where(cfg)}: folder not found")
    card = read_card(cfg, _where(cfg)) if cfg.name == "parquet" and cfg.root is not None else None
    meta = (card or {}).get(CARD_KEY)
    if isinstance(meta, dict) and isinstance(meta.get("splits"), dict):
        files = {
            split: sorted(
                f
                for p in _patterns(card, split)
                for f in glob.glob(str(Path(cfg.root) / p))
                if f.endswith(".parquet")
            )
            for split in meta["splits"]
        }
        train = meta["splits"].get("train", {})
        features = datasets.Features.from_dict(json.loads(train["features"])) if train else None
        return "parquet", files, features
    try:
        builder = datasets.load_dataset_builder(path, revision=cfg.revision, cache_dir=cfg.cache_dir)
    except (FileNotFoundError, ConnectionError, ValueError) as exc:
        raise DataError(f"[dataset] {cfg.name}: {_where(cfg)}: {first_line(exc)}") from None
    if builder.name not in ("parquet", "webdataset"):
        raise DataError(
            f"[dataset] {cfg.name}: {_where(cfg)} holds {builder.name} files; streaming reads parquet shards "
            "(`neurotrain to-parquet`) or WebDataset .tar shards"
        )
    files = {
        SPLIT_ALIASES.get(str(split), str(split)): sorted(map(str, listed))
        for split, listed in (builder.config.data_files or {}).items()
    }
    return builder.name, files, builder.info.features


def _tar_key(name: str) -> tuple[str, str]:
    """WebDataset's (key, extension): the member's path up to the first dot of its file name."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return f"{folder}/{stem}" if folder else stem, ext.lower()


def count_rows(kind: str, file: str, labels: set[int] | None = None) -> int:
    """Rows of one shard (parquet footer, tar headers); an unreadable shard is one line naming it."""
    import fsspec
    import pyarrow.parquet as pq

    try:
        with fsspec.open(file, "rb") as handle:
            if kind == "parquet":
                return pq.ParquetFile(handle).metadata.num_rows
            keys = set()
            with tarfile.open(fileobj=handle, mode="r|") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, ext = _tar_key(member.name)
                    keys.add(key)
                    if ext == "cls" and labels is not None:
                        labels.add(int(tar.extractfile(member).read().decode().strip()))
            return len(keys)
    except Exception as exc:  # noqa: BLE001 - OSError, TarError, EOFError, pyarrow's ArrowInvalid (footer)
        raise DataError(f"[dataset] streaming: cannot read shard {file} ({first_line(exc)})") from None


_COUNTED: dict[tuple, TrainShards] = {}  # shards counted in this process, by file (and size, mtime)


def _stamp(file: str) -> tuple:
    """A shard's identity for the count cache: its path, and size and mtime when it is a local file."""
    try:
        stat = os.stat(file)
    except OSError:
        return (file,)
    return (file, stat.st_size, stat.st_mtime_ns)


def train_shards(cfg: DatasetConfig) -> TrainShards:
    """The train split's shards with their row counts, counted once per process and shard set (the
    source's loader and the stream both need them; a WebDataset count reads every tar's headers)."""
    kind, files, features = resolve_files(cfg)
    train = files.get("train") or []
    key = (kind, *(_stamp(f) for f in train))
    if key not in _COUNTED:
        _COUNTED[key] = _count_train_shards(cfg, kind, train, features)
    return _COUNTED[key]


def _count_train_shards(cfg: DatasetConfig, kind: str, train: list[str], features: Any) -> TrainShards:
    if not train:
        raise DataError(f"[dataset] {cfg.name}: {_where(cfg)}: no train shards found for streaming")
    labels: set[int] = set()
    rows = [count_rows(kind, f, labels) for f in train]
    return TrainShards(kind, train, rows, features, labels)


def standardize_webdataset(ds: Any, label_names: list[str] | None = None) -> Any:
    """WebDataset columns named by extension -> ``image`` (the first image extension) and ``label``
    (``.cls``, or a ``.json`` member's ``label`` key); works on map-style and streaming splits alike."""
    names = list(ds.column_names or ds.features or [])
    image = next((c for c in names if c.lower() in IMAGE_EXTENSIONS), None)
    if image is not None:  # undecoded before any rename or map: those would decode (and a corrupt one raise)
        ds = ds.cast_column(image, datasets.Image(decode=False))
    if image is not None and image != "image":
        ds = ds.rename_column(image, "image")
    if "cls" in names:
        ds = ds.rename_column("cls", "label")
    elif "json" in names:
        ds = ds.map(lambda row: {"label": int(row["json"]["label"])}, remove_columns=["json"])
    if label_names and "label" in (ds.column_names or ds.features or []):
        ds = ds.cast_column("label", datasets.ClassLabel(names=label_names))
    return ds


def open_stream(shards: TrainShards, cfg: DatasetConfig) -> datasets.IterableDataset:
    """The whole train split as a ``datasets.IterableDataset``, one data source per shard file."""
    try:
        stream = datasets.load_dataset(
            shards.kind,
            data_files={"train": shards.files},
            split="train",
            streaming=True,
            features=shards.features if shards.kind == "parquet" else None,
        )
    except (FileNotFoundError, ConnectionError, ValueError) as exc:
        raise DataError(f"[dataset] {cfg.name}: cannot stream the train shards ({first_line(exc)})") from None
    if shards.kind == "webdataset":
        names = [str(i) for i in range(max(shards.labels) + 1)] if shards.labels else None
        stream = standardize_webdataset(stream, names)
    return stream


def _read_split(
    cfg: DatasetConfig, kind: str, files: list[str], split: str, features: Any
) -> datasets.Dataset:
    try:
        return datasets.load_dataset(
            kind,
            data_files={split: files},
            split=split,
            features=features if kind == "parquet" else None,
            cache_dir=cfg.cache_dir,
        )
    except (FileNotFoundError, ConnectionError, ValueError) as exc:
        raise DataError(f"[dataset] {cfg.name}: cannot read split {split!r} ({first_line(exc)})") from None


def load_splits(cfg: DatasetConfig) -> datasets.DatasetDict:
    """What the task prepares from when streaming: the first ``HEAD_ROWS`` train rows and the source's own
    valid/test splits (map-style; a source without them is refused, a stream cannot set rows aside)."""
    shards = train_shards(cfg)
    kind, files, _ = resolve_files(cfg)
    if "valid" not in files and cfg.valid_ratio > 0 or "test" not in files and cfg.test_ratio > 0:
        raise DataError(
            f"[dataset] {cfg.name}: streaming needs the source's own valid and test splits (it has "
            f"{', '.join(files)}); write them as shards, or set valid_ratio = 0 and test_ratio = 0"
        )
    stream = open_stream(shards, cfg)
    head = list(islice(iter(stream.decode(False)), HEAD_ROWS))
    stream_features = stream.features
    out = {"train": datasets.Dataset.from_list(head, features=stream_features)}
    for split in ("valid", "test"):
        if split not in files:
            continue
        loaded = _read_split(cfg, kind, files[split], split, shards.features)
        if kind == "webdataset":
            names = stream_features["label"].names if "label" in (stream_features or {}) else None
            loaded = standardize_webdataset(loaded, names).remove_columns(
                [c for c in WDS_META if c in loaded.column_names]
            )
        out[split] = loaded
    if kind == "webdataset":
        out["train"] = out["train"].remove_columns([c for c in WDS_META if c in out["train"].column_names])
    return normalize_splits(datasets.DatasetDict(out), f"[dataset] {cfg.name}")


@register_dataset("webdataset")
def webdataset(cfg: DatasetConfig) -> DatasetSource:
    """WebDataset ``.tar`` shards under ``root`` (``<split>-*.tar``, or any ``*.tar`` as train): members
    ``<key>.<image ext>`` with ``<key>.cls`` (or ``<key>.json`` holding ``label``)."""
    if cfg.streaming:
        return DatasetSource(load_splits(cfg))
    kind, files, _ = resolve_files(cfg)
    if kind != "webdataset":
        raise DataError(f"[dataset] webdataset: {_where(cfg)} holds {kind} files, not .tar shards")
    labels: set[int] = set()
    for file in files.get("train", []):
        count_rows(kind, file, labels)
    names = [str(i) for i in range(max(labels) + 1)] if labels else None
    out = {}
    for split, listed in files.items():
        loaded = standardize_webdataset(_read_split(cfg, kind, listed, split, None), names)
        out[split] = loaded.remove_columns([c for c in WDS_META if c in loaded.column_names])
    return DatasetSource(normalize_splits(datasets.DatasetDict(out), "[dataset] webdataset"))

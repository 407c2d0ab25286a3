"""Shared parts of the VLM dataset builders: the split schema, case-insensitive file lookup, bad-row
bookkeeping, json / jsonl reading, split and source assembly, and arrow image columns of Hub tables."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource
from ...data.splits import SPLIT_ALIASES, SPLITS
from ...errors import DataError, first_line

MARKER = "<image>"
IMAGE_TYPE = datasets.Image(decode=False)
FEATURES = datasets.Features(
    {
        "image": IMAGE_TYPE,
        "messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "answer_type": datasets.Value("string"),
        "sample_id": datasets.Value("string"),
    }
)
ID_COLUMNS = ("sample_id", "qid", "id", "question_id")
logger = logging.getLogger(__name__)

Row = tuple[dict | None, list[dict[str, str]], str, str | None]  # image, messages, answer type, id


class Files:
    """Finds a file whose path differs only in case (``a.jpg`` listed, ``A.JPG`` on disk), folder by folder;
    listings are cached. The result is absolute, whether or not it exists."""

    def __init__(self) -> None:
        self._names: dict[Path, dict[str, str]] = {}

    def __call__(self, base: Path, name: str) -> Path:
        path = base.absolute() / name
        if path.is_file():
            return path
        current = Path(path.parts[0])
        for part in path.parts[1:]:
            candidate = current / part
            if not candidate.exists():
                if current not in self._names:
                    entries = current.iterdir() if current.is_dir() else ()
                    self._names[current] = {p.name.lower(): p.name for p in entries}
                candidate = current / self._names[current].get(part.lower(), part)
            current = candidate
        return current


class Bad:
    """Bad items: the first is a ``DataError``; under ``skip_bad_samples`` each is kept to log and list."""

    def __init__(self, cfg: DatasetConfig) -> None:
        self.skip, self.lines = bool(cfg.skip_bad_samples), []

    def __call__(self, line: str) -> None:
        if not self.skip:
            raise DataError(line)
        self.lines.append(line)

    def log(self, name: str) -> None:
        if self.lines:
            more = f" (and {len(self.lines) - 1} more like it)" if len(self.lines) > 1 else ""
            logger.warning("[dataset] %s: %s%s; skipped (skip_bad_samples)", name, self.lines[0], more)


# --- shared helpers ------------------------------------------------------------------------------
def dataset_root(cfg: DatasetConfig, name: str, expected: str) -> Path:
    """``root`` as an existing folder, else a one-line ``DataError`` saying what it should hold."""
    if cfg.root is None:
        raise DataError(f"[dataset] {name}: set root (the folder holding {expected}) or hub_id")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"[dataset] {name}: root {str(root)!r}: folder not found; expected {expected}")
    return root


def image_folder(cfg: DatasetConfig, default: Path) -> Path:
    """``image_folder`` (relative to root when that folder exists there, else to the working folder)."""
    folder = getattr(cfg, "image_folder", None)
    if not folder:
        return default
    path = Path(folder).expanduser()
    if not path.is_absolute() and cfg.root and (Path(cfg.root).expanduser() / path).is_dir():
        return Path(cfg.root).expanduser() / path
    return path


def split_of(path: Path) -> str:
    """The split a file's name says (``train``, ``val``/``valid``/``validation``/``dev``, ``test``), else train."""
    words = re.split(r"[^a-z0-9]+", path.stem.lower())
    return next((SPLIT_ALIASES[w] for w in words if w in SPLIT_ALIASES), "train")


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or first_line(exc)})") from None


def _json_lines(path: Path, text: str) -> list[tuple[str, object]]:
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                out.append((f"{path}:{n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not valid JSON ({exc})") from None
    return out


def read_records(path: Path) -> list[tuple[str, object]]:
    """``(where, item)`` of a JSON list (``file: item n``) or of JSON lines (``file:line``; also in a .json)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    text = _text(path)
    if path.suffix.lower() == ".jsonl":
        return _json_lines(path, text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text[: exc.pos].strip():  # JSON lines in a .json file
            return _json_lines(path, text)
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of items, got {type(data).__name__}")
    return [(f"{path}: item {n}", item) for n, item in enumerate(data)]


def image_path(image: Path) -> dict:
    """An image file as an ``IMAGE_TYPE`` value (a path, no bytes)."""
    return {"bytes": None, "path": str(image)}


def answer_kind(value: object) -> str:
    """Official ``CLOSED``/``OPEN`` (any case, spaces) as ``closed``/``open``; anything else ``""``."""
    kind = str(value or "").strip().lower()
    return kind if kind in ("closed", "open") else ""


def to_dataset(
    split: str, images: pa.Array | pa.ChunkedArray | list, rows: list[Row], offset: int = 0
) -> datasets.Dataset:
    """One split in ``FEATURES``: ``images`` (arrow ``{bytes, path}`` structs, or dicts / None); a row without
    an id gets ``<split>-<row>`` (``offset``: rows of the split before these)."""
    if isinstance(images, list):
        images = pa.array(images, type=IMAGE_TYPE.pa_type)
    columns = {
        "image": images,
        "messages": [r[1] for r in rows],
        "answer_type": [r[2] for r in rows],
        "sample_id": [r[3] if r[3] is not None else f"{split}-{offset + i}" for i, r in enumerate(rows)],
    }
    return datasets.Dataset.from_dict(columns, features=FEATURES)


def python_split(split: str, rows: list[Row]) -> datasets.Dataset:
    """One split from rows whose image is a dict (or None), in ``FEATURES``."""
    return to_dataset(split, [r[0] for r in rows], rows)


def to_source(name: str, splits: dict[str, datasets.Dataset], bad: Bad | None = None) -> DatasetSource:
    """Splits in train/valid/test order; empty valid/test splits are left out (split off train later)."""
    if bad is not None:
        bad.log(name)
    out = {s: splits[s] for s in SPLITS if s in splits and (s == "train" or len(splits[s]))}
    if "train" not in out or not len(out["train"]):
        found = ", ".join(f"{s} ({len(d)})" for s, d in splits.items()) or "none"
        raise DataError(f"[dataset] {name}: no training conversations found (splits: {found})")
    skipped = list(bad.lines) if bad is not None else []
    return DatasetSource(
        datasets.DatasetDict(out), image_column="image", label_column="messages", skipped=skipped
    )


# --- arrow image columns (Hub, parquet): bytes stay in arrow ------------------------------------
def image_storage(column: pa.Array | pa.ChunkedArray, where: str) -> pa.ChunkedArray:
    """An image column (``Image`` structs, paths or raw bytes) as ``{bytes, path}`` structs."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column], type=column.type)
    if column.type == IMAGE_TYPE.pa_type:
        return column
    try:
        return pa.chunked_array([IMAGE_TYPE.cast_storage(c) for c in column.chunks], type=IMAGE_TYPE.pa_type)
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{where}: is not an image column ({first_line(exc)})") from None


def absolute_paths(images: pa.ChunkedArray, base: Path, files: Files) -> pa.ChunkedArray:
    """Relative paths of rows without bytes resolved against ``base`` (case-insensitively)."""
    paths = pc.struct_field(images, "path").to_pylist()
    no_bytes = pc.is_null(pc.struct_field(images, "bytes")).to_pylist()
    fixed = [
        str(files(base, p)) if p is not None and empty and not Path(p).is_absolute() else p
        for p, empty in zip(paths, no_bytes)
    ]
    if fixed == paths:
        return images
    flat = images.combine_chunks()
    out = pa.StructArray.from_arrays(
        [pc.struct_field(flat, "bytes"), pa.array(fixed, type=pa.string())],
        names=["bytes", "path"],
        mask=pc.is_null(flat) if flat.null_count else None,
    )
    return pa.chunked_array([out], type=IMAGE_TYPE.pa_type)


def hub_base(cfg: DatasetConfig) -> Path:
    """Where relative image paths of a Hub / local dataset point: image_folder, root, a local hub_id, or ."""
    if getattr(cfg, "image_folder", None) or cfg.root:
        return image_folder(cfg, Path(cfg.root or ".").expanduser())
    local = Path(cfg.hub_id or ".").expanduser()
    return local if local.is_dir() else Path(".")


def require_columns(where: str, table: pa.Table, wanted: tuple[str, ...], expected: str) -> None:
    """A one-line ``DataError`` naming the ``wanted`` columns the table lacks, if any."""
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise DataError(
            f"{where}: no {' or '.join(map(repr, missing))} column (columns: "
            f"{', '.join(table.column_names)}); expected {expected}"
        )


def row_ids(table: pa.Table) -> list[str | None]:
    """Each row's id from the first ``ID_COLUMNS`` column the table has (None when none)."""
    column = next((c for c in ID_COLUMNS if c in table.column_names), None)
    if column is None:
        return [None] * table.num_rows
    return [None if v is None else str(v) for v in table.column(column).to_pylist()]

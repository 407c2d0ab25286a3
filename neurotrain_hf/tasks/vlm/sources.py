"""Conversation dataset builders: LLaVA json, TRL messages and CLIP captions (VQA-RAD, SLAKE and PathVQA are
in ``sources_vqa``, imported here so that importing this module registers all six).

Every split has the columns ``image`` (``datasets.Image(decode=False)``: an absolute path, found case
insensitively but never opened here, or embedded bytes; None for a text-only row), ``messages`` (role +
plain text, ``<image>`` where the image goes), ``answer_type`` (``closed``, ``open`` or ``""``) and
``sample_id``. Layout errors are one-line ``DataError``s naming the file (and item or row); bad items are
skipped and listed in ``source.skipped`` under ``[dataset] skip_bad_samples``.
"""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config.sections import DatasetConfig
from ...data.registry import DATASETS, DatasetSource, register_dataset
from ...data.splits import load_hub
from ...errors import DataError, first_line
from . import sources_vqa  # noqa: F401  (registers vqa_rad, slake and pathvqa)
from .source_files import (
    ID_COLUMNS,
    IMAGE_TYPE,
    MARKER,
    Bad,
    Files,
    Row,
    absolute_paths,
    answer_kind,
    dataset_root,
    hub_base,
    image_folder,
    image_path,
    image_storage,
    python_split,
    read_records,
    require_columns,
    row_ids,
    split_of,
    to_dataset,
    to_source,
)

LLAVA_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
ONE_IMAGE = "one image per conversation is supported"


# --- LLaVA conversation json ---------------------------------------------------------------------
def _data_files(cfg: DatasetConfig, name: str, suffixes: tuple[str, ...]) -> list[Path]:
    """``data_files`` (relative to root), else every file of ``suffixes`` in root."""
    root = Path(cfg.root).expanduser() if cfg.root else None
    listed = list(getattr(cfg, "data_files", None) or [])
    if listed:
        return [(root or Path(".")) / f for f in listed]
    root = dataset_root(cfg, name, "conversation files (" + ", ".join(f"*{s}" for s in suffixes) + ")")
    found = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not found:
        expected = ", ".join(f"*{s}" for s in suffixes)
        raise DataError(f"[dataset] {name}: root {str(root)!r} has no {expected} file; or set data_files")
    return found


def _llava_image(value: object, where: str, base: Path, files: Files) -> dict | None:
    if isinstance(value, list):
        if len(value) > 1:
            raise ValueError(f"{where}: {len(value)} images; {ONE_IMAGE}")
        value = value[0] if value else None
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}: 'image' {str(value)[:60]!r} is not a file name")
    return image_path(files(base, value))


def _llava_item(item: object, where: str, base: Path, files: Files) -> Row:
    """One LLaVA item as a row; a malformed item raises ``ValueError`` with its one-line message."""
    expected = "expected {'id', 'image', 'conversations': [{'from', 'value'}, ...]}"
    if not isinstance(item, dict) or not isinstance(item.get("conversations"), list):
        raise ValueError(f"{where}: no 'conversations' list; {expected}")
    messages = []
    for k, turn in enumerate(item["conversations"]):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise ValueError(f"{where}: conversations[{k}] has no 'value' string; {expected}")
        role = LLAVA_ROLES.get(str(turn.get("from")).strip().lower())
        if role is None:
            raise ValueError(
                f"{where}: conversations[{k}] has 'from' {turn.get('from')!r}; expected human, gpt, system, "
                "user or assistant"
            )
        messages.append({"role": role, "content": turn["value"]})
    image = _llava_image(item.get("image"), where, base, files)
    sample_id = None if item.get("id") is None else str(item["id"])
    return image, messages, answer_kind(item.get("answer_type")), sample_id


@register_dataset("llava_json")
def llava_json(cfg: DatasetConfig) -> DatasetSource:
    """LLaVA / LLaVA-Med conversation ``.json`` lists or ``.jsonl`` files: ``data_files`` (the split from each
    name), else every json / jsonl in root; ``image`` is relative to ``image_folder`` (default root)."""
    base = image_folder(cfg, Path(cfg.root or ".").expanduser())
    files, bad, splits = Files(), Bad(cfg), {}
    for path in _data_files(cfg, "llava_json", (".json", ".jsonl")):
        rows = splits.setdefault(split_of(path), [])
        for where, item in read_records(path):
            try:
                rows.append(_llava_item(item, where, base, files))
            except ValueError as exc:
                bad(str(exc))
    return to_source("llava_json", {s: python_split(s, rows) for s, rows in splits.items()}, bad)


# --- TRL messages --------------------------------------------------------------------------------
def _trl_content(content: object, where: str) -> str:
    """A string, or TRL's list of ``{"type": "image"}`` / ``{"type": "text", "text": ...}`` items as text."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise ValueError(f"{where}: content {str(content)[:60]!r} is not a string or a list of items")
    text, newline = "", False
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "image":
            text, newline = text + MARKER, True
        elif kind == "text":
            part = item.get("text") or ""
            if part and newline:
                text, newline = text + "\n", False
            text += part
        else:
            raise ValueError(f"{where}: content item {str(item)[:60]!r} is not an image or a text item")
    return text


def _trl_messages(messages: object, where: str) -> list[dict[str, str]]:
    if not isinstance(messages, list):
        raise ValueError(f"{where}: 'messages' is not a list of {{'role', 'content'}}")
    out = []
    for k, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f"{where}: messages[{k}] has no 'role'; expected {{'role', 'content'}}")
        out.append(
            {
                "role": message["role"],
                "content": _trl_content(message.get("content"), f"{where}: messages[{k}]"),
            }
        )
    return out


def _json_image(value: object) -> dict | None:
    """A json ``images`` item: a path or a ``{"bytes", "path"}`` dict."""
    if isinstance(value, str):
        return {"bytes": None, "path": value}
    if isinstance(value, dict) and ("path" in value or "bytes" in value):
        return {"bytes": value.get("bytes"), "path": value.get("path")}
    if value is None:
        return None
    raise ValueError(f"image {str(value)[:60]!r} is not a path or a {{'bytes', 'path'}} dict")


def _trl_json(where_rows: list[tuple[str, object]]) -> tuple[pa.Table, list]:
    """JSON rows as a table of ``images`` (lists of image structs) and ``id``, and the rows' ``messages``."""
    messages, images, ids = [], [], []
    for where, row in where_rows:
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object with 'messages' and 'images'")
        value = row.get("images", row.get("image"))
        value = value if isinstance(value, list) else [] if value is None else [value]
        try:
            images.append([_json_image(v) for v in value])
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None
        messages.append(row.get("messages"))
        ids.append(next((str(row[c]) for c in ID_COLUMNS if row.get(c) is not None), None))
    image_lists = pa.array(images, type=pa.list_(IMAGE_TYPE.pa_type))
    return pa.table({"images": image_lists, "id": pa.array(ids, type=pa.string())}), messages


def _row_images(
    values: pa.ChunkedArray, where: str, wheres: list[str], bad: Bad
) -> tuple[pa.ChunkedArray, set]:
    """Each row's one image (null where it has none), chunk by chunk, and the rows with two or more (bad)."""
    listed = pa.types.is_list(values.type) or pa.types.is_large_list(values.type)
    out, many, row = [], set(), 0
    for chunk in values.chunks:
        if not listed:  # a single ``image`` column
            out.append(image_storage(chunk, where).chunk(0))
            row += len(chunk)
            continue
        lengths = pc.fill_null(pc.list_value_length(chunk), 0).to_pylist()
        flat = image_storage(chunk.flatten(), where).chunk(0)  # valid lists' items, in row order
        if all(n == 1 for n in lengths):  # the usual case: the items are the column (no copy)
            out.append(flat)
            row += len(lengths)
            continue
        take, start = [], 0
        for n in lengths:
            if n > 1:
                bad(f"{wheres[row]}: {n} images; {ONE_IMAGE}")
                many.add(row)
            take.append(start if n == 1 else None)
            start, row = start + n, row + 1
        out.append(flat.take(pa.array(take, type=pa.int64())))
    return pa.chunked_array(out, type=IMAGE_TYPE.pa_type), many


def _trl_split(
    split: str,
    label: str,
    table: pa.Table,
    messages: list,
    wheres: list[str],
    base: Path,
    files: Files,
    bad: Bad,
    offset: int = 0,
) -> datasets.Dataset:
    """One TRL table (an ``images`` list or an ``image`` column) and its rows' ``messages`` in ``FEATURES``."""
    column = next((c for c in ("images", "image") if c in table.column_names), None)
    if column is None:
        images, many = pa.chunked_array([pa.nulls(len(messages), type=IMAGE_TYPE.pa_type)]), set()
    else:
        images, many = _row_images(table.column(column), f"{label}: column {column!r}", wheres, bad)
        images = absolute_paths(images, base, files)
    ids = row_ids(table)
    types = table.column("answer_type").to_pylist() if "answer_type" in table.column_names else None
    rows, keep = [], []
    for i, turns in enumerate(messages):
        if i in many:
            continue
        try:
            rows.append(
                (None, _trl_messages(turns, wheres[i]), answer_kind(types[i]) if types else "", ids[i])
            )
            keep.append(i)
        except ValueError as exc:
            bad(str(exc))
    if len(keep) != len(messages):
        images = images.take(pa.array(keep, type=pa.int64()))
    return to_dataset(split, images, rows, offset)


def _trl_file(path: Path) -> tuple[pa.Table, list, list[str]]:
    """A TRL ``.json`` / ``.jsonl`` / ``.parquet`` file: its table, rows' messages and where each row is."""
    if path.suffix.lower() == ".parquet":
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path}: not a readable parquet file ({first_line(exc)})") from None
        require_columns(str(path), table, ("messages",), "messages and images")
        return table, table.column("messages").to_pylist(), [f"{path} row {i}" for i in range(table.num_rows)]
    records = read_records(path)
    table, messages = _trl_json(records)
    missing = next((w for w, r in records if isinstance(r, dict) and "messages" not in r), None)
    if missing:
        raise DataError(
            f"{missing}: no 'messages'; expected {{'messages': [{{'role', 'content'}}], 'images': [...]}}"
        )
    return table, messages, [w for w, _ in records]


@register_dataset("trl_messages")
def trl_messages(cfg: DatasetConfig) -> DatasetSource:
    """TRL's vision SFT rows (``messages`` + one image in ``images``): ``data_files`` (json / jsonl / parquet,
    the split from each name) or ``hub_id`` (a Hub id or a local ``save_to_disk`` folder)."""
    files, bad, splits = Files(), Bad(cfg), {}
    if getattr(cfg, "data_files", None) or cfg.hub_id is None:
        base = image_folder(cfg, Path(cfg.root or ".").expanduser())
        for path in _data_files(cfg, "trl_messages", (".json", ".jsonl", ".parquet")):
            split = split_of(path)
            table, messages, wheres = _trl_file(path)
            done = len(splits[split]) if split in splits else 0
            part = _trl_split(split, str(path), table, messages, wheres, base, files, bad, done)
            splits[split] = datasets.concatenate_datasets([splits[split], part]) if split in splits else part
        return to_source("trl_messages", splits, bad)
    base = hub_base(cfg)
    for split, ds in load_hub(cfg, None).items():
        label = f"[dataset] hub_id {cfg.hub_id!r}: {split}"
        table = ds.with_format("arrow")[:]
        require_columns(label, table, ("messages",), "messages and images")
        wheres = [f"{label} row {i}" for i in range(table.num_rows)]
        splits[split] = _trl_split(
            split, label, table, table.column("messages").to_pylist(), wheres, base, files, bad
        )
    return to_source("trl_messages", splits, bad)


# --- CLIP captions -------------------------------------------------------------------------------
def _png(array: np.ndarray) -> dict:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _caption_images(ds: datasets.Dataset, where: str) -> pa.ChunkedArray:
    """A CLIP split's images as ``{bytes, path}`` structs (synthetic uint8 arrays become PNG bytes)."""
    if isinstance(ds.features["image"], datasets.Image):
        return image_storage(ds.with_format("arrow")["image"], where)
    arrays = ds.with_format("numpy")["image"]
    return pa.chunked_array([pa.array([_png(a) for a in arrays], type=IMAGE_TYPE.pa_type)])


@register_dataset("captions")
def captions(cfg: DatasetConfig) -> DatasetSource:
    """A CLIP caption dataset (``caption_dataset``) as describe-the-image turns: a row per caption in train,
    the first caption of each image in valid / test."""
    from .. import get_task
    from ..clip.config import ClipDataset

    get_task("clip").load_sources()
    name = getattr(cfg, "caption_dataset", "captions_folder")
    keys = ("root", "hub_id", "revision", "max_samples", "cache_dir", "skip_bad_samples", "sampling_seed")
    clip_cfg = ClipDataset(name=name, **{k: getattr(cfg, k) for k in keys if hasattr(cfg, k)})
    source = DATASETS.get(name)(clip_cfg)
    prompt = f"{MARKER}\n{getattr(cfg, 'caption_prompt', 'Describe the image.')}"
    splits = {}
    for split, ds in source.splits.items():
        ids = ds["image_id"] if "image_id" in ds.column_names else [f"{split}-{i}" for i in range(len(ds))]
        index, rows = [], []
        for i, (texts, image_id) in enumerate(zip(ds["captions"], ids)):
            for k, text in enumerate(texts if split == "train" else texts[:1]):
                turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}]
                index.append(i)
                rows.append((None, turns, "open", f"{image_id}#{k}"))
        images = _caption_images(ds, f"[dataset] captions ({name}): {split} column 'image'")
        splits[split] = to_dataset(split, images.take(pa.array(index, type=pa.int64())), rows)
    out = to_source("captions", splits)
    out.skipped = list(source.skipped)
    return out

"""``neurotrain analyze dataset``: what a config's prepared splits hold, read from their raw rows and
``datasets.Features`` (no task named): counts per split and class, image geometry and intensities, mask,
box and text statistics, unreadable samples, and exact / near-duplicate images across splits (leakage).
Writes ``dataset_report.md``, ``dataset_report.json`` and PNG plots to one folder."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..errors import DataError, first_line
from .dataset_report_render import finish, markdown, write_plots
from .image_hash import (
    NEAR_THRESHOLD,
    Pixels,
    channels_last,
    content_hash,
    is_picture_path,
    middle_plane,
    near_pairs,
    phash,
    read_pixels,
)

REPORT_MD, REPORT_JSON = "dataset_report.md", "dataset_report.json"
KEPT = 1000  # duplicate pairs kept in the JSON
PIXELS_PER_IMAGE, PIXELS_PER_SPLIT, SIZES_KEPT = 1024, 300_000, 200_000
MASK_NAMES = re.compile(r"mask|seg|label|annot|fov|roi|target|trimap|(^|_)gt($|_)", re.I)
TEXT_NAMES = re.compile(
    r"caption|text|content|question|answer|prompt|sentence|descr|message|conversation", re.I
)
CLASS_NAMES = re.compile(r"label|categor|class", re.I)
CODE_NAMES = re.compile(r"(type|kind|role|id|lang|language)$", re.I)  # short codes, not prose
BOX_NAMES = re.compile(r"^(bbox|bboxes|box|boxes)$", re.I)
ID_NAMES = re.compile(r"^(id|.*_id|file_?name|path)$", re.I)
ARRAYS = (datasets.Array2D, datasets.Array3D, datasets.Array4D, datasets.Array5D)
LISTS = (datasets.List, datasets.LargeList)


@dataclass
class Column:
    """A leaf of the features: its path into a row (``[]`` walks a list) and what it holds."""

    path: tuple[str, ...]
    kind: str  # picture (then image / mask) | classes | boxes | string (then text / id / picture)
    names: list[str] | None = None  # ClassLabel names
    nested: bool = False  # boxes: each leaf is a list of boxes (else one box)
    dtype: str | None = None  # array pictures: the declared dtype

    @property
    def name(self) -> str:
        return ".".join(p for p in self.path if p != "[]")


def _columns(feature: Any, path: tuple[str, ...] = ()) -> list[Column]:
    """Every leaf worth reporting, by its feature type (and, for boxes and class ids, its name)."""
    last = next((p for p in reversed(path) if p != "[]"), "")
    if isinstance(feature, dict):
        return [c for key, sub in feature.items() for c in _columns(sub, (*path, key))]
    if isinstance(feature, (datasets.Image, datasets.Nifti, *ARRAYS)):
        return [Column(path, "picture", dtype=feature.dtype if isinstance(feature, ARRAYS) else None)]
    if isinstance(feature, datasets.ClassLabel):
        return [Column(path, "classes", list(feature.names))]
    if isinstance(feature, datasets.Value):
        if feature.dtype in ("string", "large_string"):
            return [Column(path, "string")]
        integer = feature.dtype.startswith(("int", "uint"))
        return [Column(path, "classes")] if integer and CLASS_NAMES.search(last) else []
    if isinstance(feature, LISTS):
        inner, depth = feature.feature, 1
        while isinstance(inner, LISTS):
            inner, depth = inner.feature, depth + 1
        numeric = isinstance(inner, datasets.Value) and inner.dtype not in ("string", "large_string")
        box_length = getattr(feature.feature if depth == 2 else feature, "length", -1) == 4
        if numeric and depth <= 2 and (BOX_NAMES.match(last) or (depth == 2 and box_length)):
            return [Column(path, "boxes", nested=depth == 2)]
        if numeric and depth >= 2:
            return [Column(path, "picture")]
        return _columns(feature.feature, (*path, "[]"))
    return []


def _walk(value: Any, path: tuple[str, ...], parent: Any = None) -> list[tuple[Any, Any]]:
    """(leaf, the dict holding it) for every leaf at ``path``; missing values give none."""
    if not path:
        return [] if value is None else [(value, parent)]
    if path[0] == "[]":
        return [
            leaf for item in (value if value is not None else []) for leaf in _walk(item, path[1:], parent)
        ]
    return _walk(value.get(path[0]) if isinstance(value, dict) else None, path[1:], value)


def _raw(split: datasets.Dataset) -> datasets.Dataset:
    """The rows without the task's transform, pictures left encoded (decoded here, failures counted)."""
    raw = split.with_format(None)

    def undecoded(feature: Any) -> Any:
        if isinstance(feature, datasets.Image | datasets.Nifti):
            return type(feature)(decode=False)
        if isinstance(feature, dict):
            return {k: undecoded(v) for k, v in feature.items()}
        return (
            type(feature)(undecoded(feature.feature), feature.length)
            if isinstance(feature, datasets.List)
            else feature
        )

    for name, feature in raw.features.items():
        if undecoded(feature) != feature:
            raw = raw.cast_column(name, undecoded(feature))
    arrays = [k for k, f in raw.features.items() if isinstance(f, ARRAYS)]
    return raw.with_format("numpy", columns=arrays, output_all_columns=True) if arrays else raw


def _resolve(columns: list[Column], first: datasets.Dataset) -> tuple[list[Column], Column | None]:
    """Decide from a few rows what strings hold (file paths, text, ids) and which pictures are masks."""
    rows = [first[i] for i in range(min(20, len(first)))]
    out, id_col = [], None
    for col in columns:
        if col.kind == "string":
            values = [v for row in rows for v, _ in _walk(row, col.path) if isinstance(v, str)]
            if values and all(is_picture_path(v) for v in values):
                col.kind = "picture"
            elif len(col.path) == 1 and ID_NAMES.match(col.name):
                id_col = id_col or col
                continue
            elif (TEXT_NAMES.search(col.path[-1]) and not CODE_NAMES.search(col.path[-1])) or _wordy(values):
                col.kind = "text"
            else:
                continue
        out.append(col)
    pictures = [c for c in out if c.kind == "picture"]
    primary = next((c for c in pictures if not MASK_NAMES.search(c.name)), pictures[0] if pictures else None)
    for col in pictures:
        col.kind = (
            "image" if col is primary or not (MASK_NAMES.search(col.name) or _maskish(col, rows)) else "mask"
        )
    return out, id_col


def _wordy(values: list[str]) -> bool:
    """Prose, not codes or JSON: three words or more on average, mostly letters."""
    if not values:
        return False
    letters = sum(ch.isalpha() for v in values for ch in v) / max(sum(len(v) for v in values), 1)
    return np.mean([len(v.split()) for v in values]) >= 3 and letters >= 0.5


def _maskish(col: Column, rows: list[dict]) -> bool:
    """A second picture column of few integer values on one channel reads as a mask."""
    try:
        pixels = _pixels(col, _walk(rows[0], col.path)[0][0])
    except Exception:
        return False
    array = channels_last(pixels)
    return array.dtype.kind in "uib" and array.shape[-1] == 1 and len(np.unique(array)) <= 32


def _new(kind: str) -> dict[str, Any]:
    """An empty accumulator for one column of one split."""
    if kind == "image":
        keys = ("shapes", "modes", "dtypes", "bits")
        return {k: Counter() for k in keys} | {
            "count": 0,
            "volumes": 0,
            "blank": 0,
            "range": [],
            "sums": {},
            "pixels": {},
        }
    if kind == "mask":
        return {"fg": [], "components": [], "sizes": [], "values": Counter(), "empty": 0}
    if kind == "boxes":
        return {"per_image": [], "w": [], "h": [], "invalid": 0}
    return {"per_sample": [], "texts": {}}


def _pixels(col: Column, value: Any) -> Pixels:
    """Decode a value; array columns keep their declared dtype (rows may come back as int64 lists)."""
    return read_pixels(np.asarray(value, col.dtype) if col.dtype else value)


def _image(acc: dict, pixels: Pixels, rng: np.random.Generator) -> bool:
    """Add a picture's geometry and intensities; returns whether it is blank (one value everywhere)."""
    array = channels_last(pixels)
    c = array.shape[-1]
    acc["count"] += 1
    acc["volumes"] += pixels.volume
    acc["shapes"]["x".join(map(str, array.shape[:-1] if c == 1 else array.shape))] += 1
    acc["modes"][pixels.mode] += 1
    acc["dtypes"][str(array.dtype)] += 1
    lo, hi = float(array.min()), float(array.max())
    if array.dtype.kind in "ui":
        acc["bits"][max(int(hi).bit_length(), 1)] += 1
    acc["range"] = [min([lo, *acc["range"][:1]]), max([hi, *acc["range"][1:]])]
    acc["blank"] += lo == hi
    flat = array.reshape(-1, c)
    sums = acc["sums"].setdefault(c, [0, np.zeros(c), np.zeros(c)])
    sums[0] += len(flat)
    sums[1] += flat.sum(0, dtype=np.float64)
    sums[2] += np.square(flat, dtype=np.float64).sum(0)
    kept = acc["pixels"].setdefault(c, [])
    if sum(len(k) for k in kept) < PIXELS_PER_SPLIT:
        kept.append(flat[rng.integers(0, len(flat), PIXELS_PER_IMAGE)].astype(np.float32))
    return lo == hi


def _mask(acc: dict, pixels: Pixels) -> None:
    """Add a mask's foreground fraction, connected components and label values."""
    from scipy import ndimage

    array = channels_last(pixels)
    cut = 0.5 if array.dtype.kind == "f" and array.max() <= 1 else 0
    foreground = (array > cut).any(-1)  # value > 0 on any channel (> 0.5 for float masks in [0, 1])
    labels, count = ndimage.label(foreground)  # face-connected: 4-neighbours in 2-D, 6 in 3-D
    acc["fg"].append(float(foreground.mean()))
    acc["components"].append(int(count))
    acc["empty"] += count == 0
    if len(acc["sizes"]) < SIZES_KEPT:
        acc["sizes"].extend(np.bincount(labels.ravel())[1:].tolist())
    if array.shape[-1] == 1:
        values, counts = np.unique(array, return_counts=True)
        if len(values) <= 64:
            acc["values"].update({str(v.item()): int(n) for v, n in zip(values, counts)})


def _boxes(acc: dict, leaves: list, nested: bool) -> None:
    """Add a sample's box count and box sizes; boxes without width or height count as invalid."""
    boxes = np.asarray([b for leaf, _ in leaves for b in (leaf if nested else [leaf])], np.float64).reshape(
        -1, 4
    )
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]  # boxes read as (x0, y0, x1, y1)
    ok = (w > 0) & (h > 0)
    acc["per_image"].append(len(boxes))
    acc["invalid"] += int((~ok).sum())
    acc["w"].extend(w[ok].tolist())
    acc["h"].extend(h[ok].tolist())


def _texts(acc: dict, leaves: list) -> None:
    """Add a sample's texts: how many, and their words and characters (per ``role`` of a conversation)."""
    acc["per_sample"].append(len(leaves))
    for text, parent in leaves:
        role = parent.get("role") if isinstance(parent, dict) else None
        sub = acc["texts"].setdefault(
            role if isinstance(role, str) else "all", {"words": [], "chars": [], "empty": 0}
        )
        sub["words"].append(len(str(text).split()))
        sub["chars"].append(len(str(text)))
        sub["empty"] += not str(text).strip()


def _scan(raw: datasets.Dataset, cols: list[Column], id_col: Column | None, limit: int | None):
    """One pass over a split's rows (evenly spaced ``limit`` of them): statistics, bad samples and the
    hashes of the first image column (the one duplicates are searched in)."""
    rows = (
        np.arange(len(raw))
        if not limit or limit >= len(raw)
        else np.linspace(0, len(raw) - 1, limit).astype(int)
    )
    view = raw if len(rows) == len(raw) else raw.select(rows.tolist())
    acc = {c.name: _new(c.kind) for c in cols if c.kind != "classes"}
    hashes, bad, rng = [], [], np.random.default_rng(0)
    primary = next((c for c in cols if c.kind == "image"), None)
    for index, row in zip(rows.tolist(), view):
        sample = _sample(index, row, id_col, cols)
        for col in cols:
            try:
                leaves = _walk(row, col.path)
                if col.kind == "image":
                    for value, _ in _stacked(col, leaves):
                        pixels = _pixels(col, value)
                        blank = _image(acc[col.name], pixels, rng)
                        if col is primary:
                            code = None if blank else phash(middle_plane(pixels))
                            hashes.append((sample, content_hash(pixels.array), code))
                elif col.kind == "mask":
                    for value, _ in _stacked(col, leaves):
                        _mask(acc[col.name], _pixels(col, value))
                elif col.kind == "boxes":
                    _boxes(acc[col.name], leaves, col.nested)
                elif col.kind == "text":
                    _texts(acc[col.name], leaves)
            except Exception as exc:  # a bad sample is counted and named, never a traceback
                bad.append({**sample, "column": col.name, "error": first_line(exc)})
    return acc, hashes, bad, len(rows)


def _stacked(col: Column, leaves: list) -> list:
    """Volume files listed per sample are the channels of one picture; other lists are several pictures."""
    values = [v for v, _ in leaves]
    stack = col.path[-1] == "[]" and len(values) > 1 and all(isinstance(v, str) for v in values)
    return (
        [(values, None)]
        if stack and all(v.lower().endswith((".nii", ".nii.gz", ".npy")) for v in values)
        else leaves
    )


def _sample(index: int, row: dict, id_col: Column | None, cols: list[Column]) -> dict[str, Any]:
    """How a row is named in the report: its index and id (the id column, else the picture's file name)."""
    found = _walk(row, id_col.path) if id_col else []
    if not found:  # an encoded picture's file name, or a picture path
        image = next((c for c in cols if c.kind == "image"), None)
        leaf = _walk(row, image.path)[:1] if image else []
        value = leaf[0][0] if leaf else None
        value = value.get("path") if isinstance(value, dict) else value
        found = [(Path(value).name, None)] if isinstance(value, str) else []
    return {"index": index, "id": str(found[0][0]) if found else None}


def _class_counts(raw: datasets.Dataset, col: Column) -> Counter:
    """Samples (or objects) per class over every row of a split, read without the pictures."""
    values = raw.select_columns([col.path[0]]).with_format(None)[col.path[0]]
    counts: Counter = Counter()
    for value in values:
        for leaf, _ in _walk({col.path[0]: value}, col.path):
            known = col.names and 0 <= int(leaf) < len(col.names)
            counts[col.names[int(leaf)] if known else str(leaf)] += 1
    return counts


def _duplicates(hashes: dict[str, list]) -> dict[str, Any]:
    """Pictures (distinct sha256) shared between splits, and distinct pictures whose pHashes differ in at
    most NEAR_THRESHOLD bits; rows showing one picture count once, named by their first row."""
    unique: dict[str, dict[str, list]] = {}  # split -> sha256 -> [pHash, rows]
    for split, items in hashes.items():
        for sample, sha, code in items:
            unique.setdefault(split, {}).setdefault(sha, [code, []])[1].append(sample)
        unique.setdefault(split, {})

    def ref(split: str, rows: list[dict]) -> dict[str, Any]:
        return {"split": split, **rows[0], "copies": len(rows), "rows": [r["index"] for r in rows[:20]]}

    names, by_pair, exact, near = list(unique), {}, [], []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = [sha for sha in unique[a] if sha in unique[b]]
            left = [(sha, rows) for sha, (code, rows) in unique[a].items() if code is not None]
            right = [(sha, rows) for sha, (code, rows) in unique[b].items() if code is not None]
            codes = [unique[a][sha][0] for sha, _ in left], [unique[b][sha][0] for sha, _ in right]
            close = [(left[p], right[q], d) for p, q, d in near_pairs(*codes) if left[p][0] != right[q][0]]
            by_pair[f"{a}/{b}"] = {"exact": len(shared), "near": len(close)}
            exact += [{"a": ref(a, unique[a][sha][1]), "b": ref(b, unique[b][sha][1])} for sha in shared]
            near += [{"a": ref(a, x[1]), "b": ref(b, y[1]), "distance": d} for x, y, d in close]
    return {
        "exact_hash": "sha256 of the decoded pixels (dtype, shape, values)",
        "near_hash": "64-bit DCT perceptual hash (pHash) of a 32 x 32 grey copy (volumes: middle slice)",
        "near_threshold": NEAR_THRESHOLD,
        "exact_across": sum(p["exact"] for p in by_pair.values()),
        "near_across": sum(p["near"] for p in by_pair.values()),
        "by_pair": by_pair,
        "within_split": {s: sum(len(rows) - 1 for _, rows in unique[s].values()) for s in names},
        "exact_pairs": exact[:KEPT],
        "near_pairs": near[:KEPT],
    }


def analyze_dataset(config: Any, out_dir: str | Path, max_images: int | None = None) -> dict[str, Any]:
    """Analyze the config's prepared splits (unreadable samples skipped and counted, not fatal); writes
    out_dir/dataset_report.md, dataset_report.json and PNGs; returns the JSON dict.
    ``max_images``: decode at most this many evenly spaced rows per split (class counts use every row)."""
    from ..data.api import prepare_data

    if max_images is not None and max_images < 1:
        raise DataError(f"max_images: must be at least 1, got {max_images}")
    config = copy.deepcopy(config)
    config.dataset.skip_bad_samples = True  # the report counts unreadable samples instead of stopping
    data = prepare_data(config)
    raws = {name: _raw(split) for name, split in data.splits.items()}
    if not raws:
        raise DataError(f"[dataset] {config.dataset.name}: no splits to analyze")
    largest = max(raws.values(), key=len)
    cols, id_col = _resolve(_columns(largest.features), largest)
    label_names = getattr(
        data.info, "label_names", None
    )  # names of integer class ids, when the task has them
    for col in cols:
        if col.kind == "classes" and col.names is None and isinstance(label_names, list | tuple):
            col.names = [str(n) for n in label_names] or None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "dataset": config.dataset.name,
        "task": config.basic.task,
        "splits": {k: len(v) for k, v in raws.items()},
        "columns": {c.name: c.kind for c in cols} | ({id_col.name: "id"} if id_col else {}),
        "classes": {},
        "images": {},
        "masks": {},
        "boxes": {},
        "texts": {},
        "bad_samples": [],
        "loader_skipped": {k: v for k, v in data.report.items() if k.startswith("skipped") and v},
    }
    for col in (c for c in cols if c.kind == "classes"):
        report["classes"][col.name] = {
            "names": col.names,
            "counts": {s: dict(_class_counts(r, col)) for s, r in raws.items()},
        }
    hashes, accs, scanned = {}, {}, {}
    for name, raw in raws.items():
        accs[name], hashes[name], bad, scanned[name] = _scan(raw, cols, id_col, max_images)
        report["bad_samples"] += [{"split": name, **b} for b in bad]
    report["scanned"] = scanned
    for col in cols:
        section = {"image": "images", "mask": "masks", "boxes": "boxes", "text": "texts"}.get(col.kind)
        if section:
            report[section][col.name] = {s: finish(col.kind, accs[s][col.name]) for s in raws}
    primary = next((c.name for c in cols if c.kind == "image"), None)
    report["duplicates"] = {"column": primary, **_duplicates(hashes)}
    report["report_md"] = str(out / REPORT_MD)
    report["summary"] = summary_line(report)
    report["files"] = [REPORT_MD, REPORT_JSON, *write_plots(out, report, accs)]
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    (out / REPORT_MD).write_text(markdown(report, report["summary"]), encoding="utf-8")
    return report


def _loader_skipped(report: dict) -> int:
    """Samples the task's loader skipped as unreadable (its report's ``skipped_samples``)."""
    value = report["loader_skipped"].get("skipped_samples", 0)
    return int(sum(value.values()) if isinstance(value, dict) else value or 0)


def summary_line(report: dict[str, Any]) -> str:
    """One line: splits, samples, classes, duplicates across splits (by split pair), unreadable samples."""
    md_path = report.get("report_md", REPORT_MD)
    parts = [f"{len(report['splits'])} splits, {sum(report['splits'].values())} samples"]
    first = next(iter(report["classes"].values()), None)
    if first:
        parts[0] += f", {len(first['names'] or {k for c in first['counts'].values() for k in c})} classes"
    dup = report["duplicates"]
    pairs = ", ".join(
        f"{k}: {v['exact'] + v['near']}" for k, v in dup["by_pair"].items() if v["exact"] + v["near"]
    )
    parts.append(
        f"{dup['exact_across']} exact and {dup['near_across']} near duplicates across splits"
        + (f" ({pairs})" if pairs else "")
    )
    bad = len({(b["split"], b["index"]) for b in report["bad_samples"]}) + _loader_skipped(report)
    if bad:
        parts.append(f"{bad} unreadable sample{'s' if bad > 1 else ''}")
    return "; ".join(parts) + f"; report: {md_path}"

"""Detection / instance segmentation builders (official COCO 2017, COCO json, Pascal VOC, YOLO; Hub datasets).

Splits have ``DETECTION_FEATURES``: absolute XYXY boxes, 0-based indices into ``source.categories``, COCO
polygon / RLE JSON strings (or ""); rows sorted by id. Bad boxes, categories, polygons and images raise
one-line ``DataError``s naming the file and annotation, or (``skip_bad_samples``) are listed in
``source.skipped``; boxes partly outside their image are clipped (``source.clipped``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import yaml

from ...config.sections import DatasetConfig
from ...data.images import image_name, inspect_image
from ...data.registry import DatasetSource, register_dataset
from ...data.splits import SPLITS, load_hub
from ...errors import DataError


@dataclass
class DetectionSource(DatasetSource):
    """A detection source's splits, its categories (index = training label) and the boxes it clipped."""

    categories: list[str] = field(default_factory=list)
    clipped: int = 0


IMAGE_TYPE = datasets.Image(decode=False)
OBJECT_FEATURES = {
    "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
    "category": datasets.Value("int64"),
    "area": datasets.Value("float32"),
    "iscrowd": datasets.Value("int64"),
    "segmentation": datasets.Value("string"),
    "id": datasets.Value("int64"),
}
DETECTION_FEATURES = datasets.Features(
    {
        "image": IMAGE_TYPE,
        "image_id": datasets.Value("int64"),
        "id": datasets.Value("string"),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "objects": datasets.Sequence(OBJECT_FEATURES),
        "source": datasets.Value("string"),
    }
)
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dng", ".mpo", ".pfm"}
COCO_SPLITS = (("train", "train2017"), ("valid", "val2017"))
logger = logging.getLogger(__name__)


def _error(name: str, message: str) -> DataError:
    return DataError(f"[dataset] {name}: {message}")


class Checks:
    """Bad samples: a one-line error, or (``skip_bad_samples``) a warning and an entry in ``skipped``."""

    def __init__(self, cfg: DatasetConfig, name: str) -> None:
        self.skip, self.name, self.skipped, self.clipped = bool(cfg.skip_bad_samples), name, [], 0

    def bad(self, where: str, message: str) -> None:
        if not self.skip:
            raise _error(self.name, f"{where}: {message}; fix it or set [dataset] skip_bad_samples = true")
        logger.warning("[dataset] %s: skipping %s: %s", self.name, where, message)
        self.skipped.append(f"{where}: {message}")


@dataclass
class Item:
    """One image before checking: ``value`` is a ``datasets`` Image dict; objects hold raw annotations."""

    value: dict
    key: str
    image_id: int | None = None
    size: tuple[int, int] | None = None  # (width, height) the annotations state, checked against the file
    # raw annotations: ``where`` (for messages), ``box`` XYXY (0-1 when ``normalised``), ``label`` as written,
    # ``category`` index (None: unknown), optional ``area``, ``iscrowd``, ``segmentation``, ``id``
    objects: list[dict] = field(default_factory=list)

    @property
    def where(self) -> str:
        return image_name(self.value)


def _polygon_area(polys: list[list[float]]) -> float:
    """Shoelace area, summed over the polygons of one object."""
    return (
        sum(abs(sum(p[i] * p[i - 1] - p[i - 2] * p[i + 1] for i in range(0, len(p), 2))) for p in polys) / 2
    )


def rle_counts(counts: list[int] | str) -> list[int]:
    """Run lengths of an uncompressed (list) or compressed (pycocotools string) COCO RLE."""
    if not isinstance(counts, str):
        return [int(c) for c in counts]
    out, x, k = [], 0, 0
    for char in counts:  # 5 bits per char, bit 6 = more; the sign bit ends a value; deltas from run i-2
        c = ord(char) - 48
        x, k = x | (c & 0x1F) << (5 * k), k + 1
        if not c & 0x20:
            x = x | -1 << (5 * k) if c & 0x10 else x
            out.append(x + out[-2] if len(out) > 2 else x)
            x, k = 0, 0
    return out


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """A binary (h, w) mask as a compressed COCO RLE (what pycocotools' ``loadRes`` reads for ``segm``)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")  # COCO runs are column-major, zeros first
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    runs = ([0] + runs if flat.size and flat[0] else runs) or [0]
    chars = []
    for i, run in enumerate(runs):  # inverse of ``rle_counts``: deltas from run i-2, 5 bits per char
        x, more = run - runs[i - 2] if i > 2 else run, True
        while more:
            c, x = x & 0x1F, x >> 5
            more = x != -1 if c & 0x10 else x != 0
            chars.append(chr((c | 0x20 if more else c) + 48))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def _segmentation(seg: Any, width: int, height: int) -> tuple[str, float | None, str | None]:
    """(JSON string, mask area, problem) of a COCO polygon list or RLE dict; "" when there is none."""
    if seg is None or seg == [] or seg == "":
        return "", None, None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        try:
            runs = rle_counts(counts)
        except (TypeError, ValueError, IndexError):
            return "", None, f"RLE counts {str(counts)[:40]!r} are not run lengths"
        if list(size or []) != [height, width] or sum(runs) != height * width or min(runs, default=0) < 0:
            return (
                "",
                None,
                f"RLE size {size} (runs {sum(runs)}) is not [height, width] = [{height}, {width}]",
            )
        return json.dumps({"size": [height, width], "counts": counts}), float(sum(runs[1::2])), None
    if not isinstance(seg, list) or not all(isinstance(p, list) for p in seg):
        return "", None, f"segmentation {str(seg)[:40]!r} is neither polygons [[x1,y1,...]] nor an RLE dict"
    for p in seg:
        if len(p) < 6 or len(p) % 2 or not all(isinstance(v, int | float) for v in p):
            return "", None, f"polygon {str(p)[:40]} has fewer than three points (or an odd count)"
    polygons = [[float(v) for v in p] for p in seg]
    return json.dumps(polygons), _polygon_area(polygons), None


def _check_object(obj: dict, width: int, height: int, checks: Checks, n_categories: int) -> dict | None:
    """The internal object, clipped to the image, or None when it is bad (raised or skipped)."""
    where, category = obj["where"], obj["category"]
    if category is None or not 0 <= category < n_categories:
        checks.bad(where, f"category {obj['label']!r} is not one of the {n_categories} categories")
        return None
    box = _floats(obj["box"]) if isinstance(obj["box"], list | tuple) else None
    if box is None or len(box) != 4:
        checks.bad(where, f"box {obj['box']!r} is not four numbers")
        return None
    x0, y0, x1, y1 = box
    seg = obj.get("segmentation")
    if obj.get("normalised"):
        x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
        seg = seg and [[v * (width, height)[i % 2] for i, v in enumerate(p)] for p in seg]
    text, mask_area, problem = _segmentation(seg, width, height)
    if problem:
        checks.bad(where, problem)
        return None
    shown = [round(v, 2) for v in (x0, y0, x1, y1)]
    if not all(map(math.isfinite, (x0, y0, x1, y1))) or x1 <= x0 or y1 <= y0:
        checks.bad(where, f"box {shown} (x_min, y_min, x_max, y_max) has zero or negative width/height")
        return None
    clipped = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        checks.bad(where, f"box {shown} lies entirely outside the {width}x{height} image")
        return None
    checks.clipped += max(abs(a - b) for a, b in zip(clipped, (x0, y0, x1, y1))) > 0.01  # not rounding
    box_area = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1])
    area = obj.get("area") or (mask_area if mask_area is not None else box_area)
    values = (list(clipped), int(category), float(area), int(obj.get("iscrowd") or 0), text, obj["id"])
    return dict(zip(OBJECT_FEATURES, values))


def detection_split(rows: list[dict]) -> datasets.Dataset:
    """Rows (``image`` a ``{"bytes", "path"}`` dict, ``objects`` a list of object dicts) -> a split."""
    columns: dict[str, Any] = {key: [r[key] for r in rows] for key in DETECTION_FEATURES}
    columns["image"] = pa.array(columns["image"], type=IMAGE_TYPE.pa_type)  # no per-row encode_example
    columns["objects"] = [{k: [o[k] for o in objs] for k in OBJECT_FEATURES} for objs in columns["objects"]]
    return datasets.Dataset.from_dict(columns, features=DETECTION_FEATURES)


def _finish(items: list[Item], checks: Checks, n_categories: int, cap: int | None) -> datasets.Dataset:
    """Sort by id, number by position (unless the source has ids), read every image, check the objects."""
    items = sorted(items, key=lambda item: (item.key, item.where))
    next_id = 1
    for index, item in enumerate(items):
        item.image_id = index if item.image_id is None else item.image_id
        for obj in item.objects:  # running annotation ids where the source has none
            obj["id"] = next_id if obj.get("id") is None else int(obj["id"])
            next_id = max(next_id, obj["id"]) + 1
    items = items[:cap] if cap else items
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        infos = list(pool.map(lambda item: inspect_image(item.value), items))
    rows = []
    for item, info in zip(items, infos):
        if info["error"]:
            checks.bad(item.where, f"cannot read this image ({info['error']})")
            continue
        width, height = info["width"], info["height"]
        if item.size and tuple(item.size) != (width, height):
            checks.bad(item.where, f"annotations give (w, h) {tuple(item.size)}, the file {width}x{height}")
            continue
        objects = [_check_object(obj, width, height, checks, n_categories) for obj in item.objects]
        objects = [obj for obj in objects if obj is not None]
        row = {"image": item.value, "image_id": item.image_id, "id": item.key, "objects": objects}
        rows.append(row | {"width": width, "height": height, "source": checks.name})
    return detection_split(rows)


def _source(checks: Checks, splits: dict[str, list[Item]], categories: list[str], cap: int | None):
    out = {s: _finish(splits[s], checks, len(categories), cap) for s in SPLITS if splits.get(s)}
    if not out.get("train"):
        raise _error(checks.name, f"no training images found ({len(checks.skipped)} bad samples skipped)")
    source = DetectionSource(
        datasets.DatasetDict(out),
        label_column="objects",
        skipped=checks.skipped,
        categories=list(categories),
        clipped=checks.clipped,
    )
    return source


def _floats(values: Any) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _xywh(bbox: Any) -> Any:
    """COCO ``[x, y, w, h]`` -> ``[x0, y0, x1, y1]``; anything else as is (reported when checked)."""
    b = _floats(bbox) if isinstance(bbox, list | tuple) else None
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]] if b and len(b) == 4 else bbox


def _ref(path: Path) -> dict:
    return {"bytes": None, "path": str(path.absolute())}


def _root(cfg: DatasetConfig, name: str, expected: str) -> Path:
    if cfg.root is None:
        raise _error(name, f"set root to the folder holding {expected}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise _error(name, f"root {str(root)!r}: folder not found; expected {expected}")
    return root


def _load(name: str, path: Path, expected: str) -> Any:
    if not path.is_file():
        raise _error(name, f"{path}: file not found; expected {expected}")
    try:
        text = path.read_text(encoding="utf-8-sig")
        return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise _error(name, f"{path}: not readable ({str(exc).strip().splitlines()[0]})") from None


# --- COCO ----------------------------------------------------------------------------------------
def _coco_json(checks: Checks, path: Path, folder: Path) -> tuple[list[str], list[int], list[Item]]:
    """Categories (by sorted id), their ids and the images of one instances json."""
    data = _load(checks.name, path, "a COCO instances json")
    lists = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in lists):
        raise _error(checks.name, f"{path}: expected top-level lists {', '.join(lists)}")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(cats)}
    images: dict[int, Item] = {}
    for image in data["images"]:
        if image.get("id") in images:
            raise _error(checks.name, f"{path}: image id {image.get('id')} is listed twice")
        file = folder / str(image.get("file_name", ""))
        size = (image["width"], image["height"]) if "width" in image and "height" in image else None
        images[image.get("id")] = Item(_ref(file), Path(file).stem, image.get("id"), size)
    for ann in sorted(data["annotations"], key=lambda a: a.get("id") or 0):
        item, ann_id = images.get(ann.get("image_id")), ann.get("id")
        if item is None:
            checks.bad(f"{path}: annotation {ann_id}", f"image_id {ann.get('image_id')} is not in images")
            continue
        where, label = f"{item.where}: annotation {ann_id}", ann.get("category_id")
        box = _xywh(ann.get("bbox"))
        item.objects.append(dict(ann, where=where, box=box, label=label, category=index.get(label)))
    return [str(c["name"]) for c in cats], [c["id"] for c in cats], list(images.values())


@register_dataset("coco")
def coco(cfg: DatasetConfig) -> DatasetSource:
    """COCO 2017: ``annotations/instances_{train,val}2017.json`` with ``train2017/``, ``val2017/``."""
    expected = "annotations/instances_train2017.json and train2017/ (val2017 optional)"
    root, checks = _root(cfg, "coco", expected), Checks(cfg, "coco")
    splits, categories, ids = {}, None, None
    for split, part in COCO_SPLITS:
        path = root / "annotations" / f"instances_{part}.json"
        if split != "train" and not path.is_file():
            continue
        names, cat_ids, splits[split] = _coco_json(checks, path, root / part)
        if ids is not None and cat_ids != ids:
            raise _error("coco", f"{path}: categories differ from instances_train2017.json")
        categories, ids = names, cat_ids
    return _source(checks, splits, categories or [], cfg.max_samples)


@register_dataset("coco_json")
def coco_json(cfg: DatasetConfig) -> DatasetSource:
    """One COCO instances json (``split_file``) whose ``file_name``s are relative to ``root``: a train split."""
    root, checks = _root(cfg, "coco_json", "the images"), Checks(cfg, "coco_json")
    if not cfg.split_file:
        raise _error("coco_json", "set split_file to the COCO instances json (file names relative to root)")
    path = Path(cfg.split_file).expanduser()
    path = path if path.is_file() or path.is_absolute() else root / path
    names, _, items = _coco_json(checks, path, root)
    return _source(checks, {"train": items}, names, cfg.max_samples)


# --- Pascal VOC ----------------------------------------------------------------------------------
def _voc_item(checks: Checks, year: Path, key: str, source: Path) -> Item | None:
    xml = year / "Annotations" / f"{key}.xml"
    if not xml.is_file():
        checks.bad(str(xml), f"annotation file not found (image {key!r} is listed in {source})")
        return None
    try:
        tree = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        checks.bad(str(xml), f"not valid XML ({exc})")
        return None
    size = tuple(int(v) for v in _floats([tree.findtext(f"size/{k}") for k in ("width", "height")]) or ())
    item = Item(_ref(year / "JPEGImages" / f"{key}.jpg"), key, size=size if size and all(size) else None)
    for i, obj in enumerate(tree.findall("object")):
        name = (obj.findtext("name") or "").strip()
        raw = [obj.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
        box = _floats(raw)  # 1-based pixel coordinates -> 0-based XYXY (torchvision / mmdet)
        obj = {"where": f"{xml}: object {i} ({name})", "label": name, "iscrowd": obj.findtext("difficult")}
        obj["box"] = [box[0] - 1, box[1] - 1, box[2], box[3]] if box else raw
        obj["category"] = VOC_CLASSES.index(name) if name in VOC_CLASSES else None
        obj["iscrowd"] = int((_floats([obj["iscrowd"]]) or [0])[0])  # difficult: kept, marked like a crowd
        item.objects.append(obj)
    return item


@register_dataset("voc")
def voc(cfg: DatasetConfig) -> DatasetSource:
    """Pascal VOC 2007/2012 (root: ``VOCdevkit`` or ``VOC20xx``); splits from ``ImageSets/Main/*.txt``."""
    expected = "VOCdevkit/VOC2012/{Annotations,JPEGImages,ImageSets/Main}"
    root, checks = _root(cfg, "voc", expected), Checks(cfg, "voc")
    root = root / "VOCdevkit" if (root / "VOCdevkit").is_dir() else root
    years = [y for y in (root, *sorted(root.glob("VOC*"))) if (y / "Annotations").is_dir()]
    if not years:
        raise _error("voc", f"root {str(root)!r} is not in the official layout; expected {expected}")
    splits: dict[str, list[Item]] = {}
    for year in years:
        main = year / "ImageSets" / "Main"
        files = {"train": main / "train.txt", "valid": main / "val.txt", "test": main / "test.txt"}
        if not files["train"].is_file():
            files["train"] = main / "trainval.txt"
        for split, txt in ((s, t) for s, t in files.items() if t.is_file()):
            keys = [line.split()[0] for line in txt.read_text().splitlines() if line.strip()]
            items = [_voc_item(checks, year, key, txt) for key in keys]
            splits.setdefault(split, []).extend(i for i in items if i is not None)
    return _source(checks, splits, list(VOC_CLASSES), cfg.max_samples)


# --- YOLO (ultralytics) --------------------------------------------------------------------------
def _yolo_images(name: str, base: Path, entry: str) -> list[Path]:
    """Image files of a ``data.yaml`` split entry: a folder (recursive) or a ``.txt`` list of images."""
    path = base / entry
    if not path.exists() and entry.startswith("../") and (base / entry[3:]).exists():
        path = base / entry[3:]  # Roboflow exports: ``train: ../train/images`` next to data.yaml
    if path.is_dir():
        files = path.rglob("*")
        return sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if path.is_file() and path.suffix == ".txt":
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        return [p if p.is_absolute() else path.parent / p for p in map(Path, lines)]
    raise _error(name, f"{path}: split folder or image list not found (data.yaml entry {entry!r})")


def _yolo_labels(checks: Checks, image: Path, index: dict[int, int]) -> list[dict]:
    """``labels/`` twin of ``images/``: ``class cx cy w h`` or ``class x1 y1 x2 y2 ...`` (normalised)."""
    parts = str(image.absolute()).rsplit(f"{os.sep}images{os.sep}", 1)
    label = Path(f"{os.sep}labels{os.sep}".join(parts)).with_suffix(".txt")
    if not label.is_file():
        return []  # a background image
    objects = []
    for n, line in enumerate(label.read_text().splitlines(), 1):
        tokens, where = line.split(), f"{label}:{n}"
        if not tokens:
            continue
        values = _floats(tokens) or []
        if len(values) < 5 or not math.isfinite(values[0]) or values[0] != int(values[0]):
            checks.bad(where, f"expected 'class cx cy w h' or 'class x1 y1 x2 y2 ...', got {line[:60]!r}")
            continue
        cls, coords = int(values[0]), values[1:]
        obj = {"where": where, "label": cls, "category": index.get(cls), "normalised": True}
        if len(coords) == 4:
            cx, cy, w, h = coords
            obj["box"] = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        else:  # a segment: class x1 y1 x2 y2 ...
            xs, ys = coords[0::2], coords[1::2]
            obj["box"], obj["segmentation"] = [min(xs), min(ys), max(xs), max(ys)], [coords]
        objects.append(obj)
    return objects


@register_dataset("yolo")
def yolo(cfg: DatasetConfig) -> DatasetSource:
    """Ultralytics YOLO: ``data.yaml`` (root, or ``split_file``) with ``images/<split>`` and ``labels/<split>``."""
    checks = Checks(cfg, "yolo")
    expected = "data.yaml with images/<split>/ and labels/<split>/"
    path = Path(cfg.split_file).expanduser() if cfg.split_file else _root(cfg, "yolo", expected) / "data.yaml"
    data = _load("yolo", path, "a data.yaml with path, train, val and names")
    names = data.get("names") if isinstance(data, dict) else None
    names = dict(enumerate(names)) if isinstance(names, list) else names
    if not isinstance(names, dict):
        raise _error("yolo", f"{path}: 'names' must be a list or a {{id: name}} mapping")
    names = {int(k): str(v) for k, v in sorted(names.items(), key=lambda kv: int(kv[0]))}  # ids may have gaps
    categories, index = list(names.values()), {k: i for i, k in enumerate(names)}
    base = Path(str(data.get("path") or "")).expanduser()
    base = base if base.is_absolute() else path.parent / base
    splits: dict[str, list[Item]] = {}
    for key, split in (("train", "train"), ("val", "valid"), ("test", "test")):
        entries = data.get(key)
        for entry in [entries] if isinstance(entries, str) else entries or []:
            for image in _yolo_images("yolo", base, str(entry)):
                item = Item(_ref(image), image.stem, objects=_yolo_labels(checks, image, index))
                splits.setdefault(split, []).append(item)
    return _source(checks, splits, categories, cfg.max_samples)


# --- Hub -----------------------------------------------------------------------------------------
def _hub_split(checks: Checks, cfg: DatasetConfig, split: str, ds: datasets.Dataset) -> tuple[list, list]:
    """Items and category names of one Hub split (``objects``: COCO xywh ``bbox``, ClassLabel ``category``)."""
    image_col = cfg.image_column or next((c for c in ("image", "img") if c in ds.column_names), "image")
    objects_col = cfg.label_column or "objects"
    for col in (image_col, objects_col):
        if col not in ds.column_names:
            raise _error(
                checks.name, f"{split} has no column {col!r} (columns: {', '.join(ds.column_names)})"
            )
    fields = ds.features[objects_col]  # Sequence(dict) -> a dict; List(dict) -> .feature is the dict
    fields = fields if isinstance(fields, dict) else getattr(fields, "feature", {})
    cat_key = next((k for k in ("category", "categories", "label", "labels") if k in fields), None)
    names = fields.get(cat_key)
    while names is not None and not hasattr(names, "names") and hasattr(names, "feature"):
        names = names.feature  # List(ClassLabel) -> ClassLabel
    if "bbox" not in fields or not hasattr(names, "names"):
        raise _error(checks.name, f"{split}: {objects_col!r} needs 'bbox' and a ClassLabel 'category' field")
    items = []
    for i, row in enumerate(ds.cast_column(image_col, IMAGE_TYPE)):
        objs, value, image_id = row[objects_col], row[image_col], row.get("image_id")
        if isinstance(objs, dict):  # Sequence(dict): a dict of lists
            objs = [dict(zip(objs, values)) for values in zip(*objs.values())]
        key = Path(value["path"]).stem if value.get("path") else f"{i:08d}"
        item = Item(value, key, image_id if isinstance(image_id, int) else i)
        item.size = (row["width"], row["height"]) if row.get("width") and row.get("height") else None
        for j, o in enumerate(objs):
            where = f"{split} row {i} ({item.where}): object {o.get('id', j)}"
            box, label = _xywh(o["bbox"]), o[cat_key]
            item.objects.append(dict(o, where=where, box=box, label=label, category=label))
        items.append(item)
    return items, list(names.names)


@register_dataset("hub_detection")
def hub_detection(cfg: DatasetConfig) -> DatasetSource:
    """A Hub id or ``save_to_disk`` folder with ``image`` and ``objects`` (COCO ``bbox`` xywh, ``category``)."""
    checks = Checks(cfg, f"hub_id {str(cfg.hub_id or cfg.root)!r}")
    splits, categories = {}, None
    for split, ds in load_hub(cfg, cfg.root).items():
        splits[split], names = _hub_split(checks, cfg, split, ds)
        if categories is not None and names != categories:
            raise _error(checks.name, f"{split}: category names differ from the other splits")
        categories = names
    return _source(checks, splits, categories or [], cfg.max_samples)

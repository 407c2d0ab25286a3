"""Image-caption dataset builders: caption folders, COCO Captions 2017 / Karpathy, Flickr30k, Hub datasets.

Local builders read ``[dataset] root`` in the official layout (``docs/dataset-layouts.md`` sections 10, 11,
15). Every split has the columns ``image`` (``datasets.Image(decode=False)`` pointing at the file, which may
be missing: the caller's image scan reports it), ``captions`` (all raw captions of the image, in file order)
and ``image_id`` (string). Layout errors raise one-line ``DataError``s naming the file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import datasets
import pyarrow as pa

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource, register_dataset
from ...data.splits import SPLIT_ALIASES, SPLITS, load_hub
from ...errors import DataError

IMAGE_TYPE = datasets.Image(decode=False)
FEATURES = datasets.Features(
    {
        "image": IMAGE_TYPE,
        "captions": datasets.Sequence(datasets.Value("string")),
        "image_id": datasets.Value("string"),
    }
)
CAPTION_COLUMNS = ("captions", "caption", "text", "sentences")
# several caption columns, ``caption_0`` ... ``caption_4`` (as in imagefolder re-uploads of Flickr8k)
NUMBERED_CAPTIONS = re.compile(r"(?:captions?|texts?|sentences?)_?\d+", re.IGNORECASE)
ID_COLUMNS = ("id", "image_id", "img_id")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
FOLDER_SPLITS = {**SPLIT_ALIASES, "training": "train", "testing": "test"}
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "valid", "test": "test"}
METADATA = ("metadata.jsonl", "metadata.csv")
FLICKR_FOLDERS = ("flickr30k-images", "flickr30k_images/flickr30k_images", "flickr30k_images", "images", ".")
FLICKR_TOKENS = ("results_20130124.token", "results.token", "results.csv")
KAGGLE_BROKEN_ROW = re.compile(r"\s*\d+\s+(.*)", re.DOTALL)  # "<file>| 4 A dog ..." (a missing "|")
COCO_EXPECTED = "annotations/captions_{train,val}2017.json or dataset_coco.json (Karpathy)"
FLICKR_EXPECTED = "dataset_flickr30k.json (Karpathy) or results_20130124.token, with flickr30k-images/"
logger = logging.getLogger(__name__)

Images = dict[str, tuple[Path, list[str]]]  # image id -> (image file, its captions), in file order


class _Files:
    """Finds a file whose name differs only in case (``a.jpg`` listed, ``a.JPG`` on disk); listings are cached."""

    def __init__(self) -> None:
        self._names: dict[Path, dict[str, str]] = {}

    def __call__(self, path: Path) -> Path:
        if path.is_file():
            return path
        folder = path.parent
        if folder not in self._names:
            entries = folder.iterdir() if folder.is_dir() else ()
            self._names[folder] = {p.name.lower(): p.name for p in entries}
        name = self._names[folder].get(path.name.lower())
        return folder / name if name else path


# --- shared helpers ------------------------------------------------------------------------------
def _drop(cfg: DatasetConfig, problems: list[str]) -> None:
    """Raise the first problem, or under ``skip_bad_samples`` log it (and how many more) and go on."""
    if not problems:
        return
    if not cfg.skip_bad_samples:
        raise DataError(problems[0])
    more = f" (and {len(problems) - 1} more like it)" if len(problems) > 1 else ""
    logger.warning("%s%s; skipped (skip_bad_samples)", problems[0], more)


def _as_captions(value: object, where: str) -> list[str]:
    """A caption cell as a list: a string, a list of strings, or Karpathy-style ``{"raw": ...}`` sentences."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and isinstance(value.get("raw"), str):
        return [value["raw"]]
    if isinstance(value, list | tuple):
        return [caption for item in value for caption in _as_captions(item, where)]
    raise DataError(f"{where}: caption {str(value)[:60]!r} is not a string or a list of strings")


def _caption_columns(columns: list[str], cfg: DatasetConfig) -> list[str]:
    """``caption_column``, else the first of ``captions``/``caption``/``text``/``sentences``, else ``caption_0..``."""
    if cfg.caption_column:
        return [cfg.caption_column] if cfg.caption_column in columns else []
    named = next((c for c in CAPTION_COLUMNS if c in columns), None)
    if named:
        return [named]
    numbered = [c for c in columns if NUMBERED_CAPTIONS.fullmatch(c)]
    return sorted(numbered, key=lambda c: int(re.sub(r"\D", "", c)))


def _caption_hint(cfg: DatasetConfig) -> str:
    """The caption column looked for, as error messages say it."""
    if cfg.caption_column:
        return f"{cfg.caption_column!r} (caption_column)"
    return "one of " + ", ".join(CAPTION_COLUMNS) + " (or set caption_column)"


def _text(path: Path) -> str:
    """A text file as UTF-8 (a BOM is dropped); other encodings are a one-line error."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None


def _read_json(path: Path, keys: tuple[str, ...], expected: str) -> dict:
    """A JSON object holding lists under ``keys``; anything else is a one-line layout error."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected {expected}")
    try:
        data = json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); expected {expected}") from None
    missing = [k for k in keys if not isinstance(data, dict) or not isinstance(data.get(k), list)]
    if missing:
        raise DataError(
            f"{path}: no {' or '.join(map(repr, missing))} list; expected top-level keys {', '.join(keys)}"
        )
    return data


def _split(images: Images) -> datasets.Dataset:
    paths = [{"bytes": None, "path": str(path.absolute())} for path, _ in images.values()]
    columns = {
        "image": pa.array(paths, type=IMAGE_TYPE.pa_type),  # no per-row encode_example (a stat per file)
        "captions": [captions for _, captions in images.values()],
        "image_id": list(images),
    }
    return datasets.Dataset.from_dict(columns, features=FEATURES)


def _source(name: str, splits: dict[str, Images]) -> DatasetSource:
    """Splits in ``train``/``valid``/``test`` order; images without any caption are left out (logged)."""
    out = {}
    for split in SPLITS:
        images = splits.get(split) or {}
        empty = [str(path) for path, captions in images.values() if not captions]
        if empty:
            logger.warning(
                "[dataset] %s: %d %s image(s) without captions left out: %s",
                name,
                len(empty),
                split,
                empty[0],
            )
        kept = {key: entry for key, entry in images.items() if entry[1]}
        if kept:
            out[split] = _split(kept)
    if "train" not in out:
        raise DataError(f"[dataset] {name}: no training captions found (splits: {', '.join(out) or 'none'})")
    return DatasetSource(datasets.DatasetDict(out), image_column="image", label_column="captions")


def _root(cfg: DatasetConfig, name: str, expected: str) -> Path:
    if cfg.root is None:
        raise DataError(f"[dataset] {name}: set root (the folder holding {expected}) or hub_id")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"[dataset] {name}: root {str(root)!r}: folder not found; expected {expected}")
    return root


def _first(folders: list[Path], names: tuple[str, ...]) -> Path | None:
    return next((f / n for n in names for f in folders if (f / n).is_file()), None)


# --- caption folders -----------------------------------------------------------------------------
def _read_metadata(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """Columns and ``(line, row)`` pairs of a ``metadata.jsonl`` or ``metadata.csv`` file."""
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(_text(path), newline=""))
        rows = [(reader.line_num, row) for row in reader]
        return list(reader.fieldnames or []), rows
    rows = []
    for n, line in enumerate(_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise DataError(
                f"{path}:{n}: expected a JSON object with file_name and a caption, got {line[:60]!r}"
            )
        rows.append((n, row))
    return list(dict.fromkeys(k for _, row in rows for k in row)), rows


def _folder_metadata(
    cfg: DatasetConfig, path: Path, root: Path, split: str | None, splits: dict, files: _Files
) -> None:
    """Add a metadata file's rows to ``splits``; rows naming one file merge their captions."""
    columns, rows = _read_metadata(path)
    wanted = f"file_name and {_caption_hint(cfg)}"
    if "file_name" not in columns:
        raise DataError(
            f"{path}: no file_name column (columns: {', '.join(columns) or 'none'}); expected {wanted}"
        )
    caption_columns = _caption_columns(columns, cfg)
    if not caption_columns:
        raise DataError(f"{path}: no caption column (columns: {', '.join(columns)}); expected {wanted}")
    problems = []
    for line, row in rows:
        name = row.get("file_name")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{path}:{line}: empty file_name")
            continue
        captions = _as_captions([row.get(c) for c in caption_columns], f"{path}:{line}")
        image = files(path.parent / name)
        parts = Path(name).parts
        row_split = split or (FOLDER_SPLITS.get(parts[0].lower(), "train") if len(parts) > 1 else "train")
        try:
            key = image.relative_to(root).as_posix()
        except ValueError:  # an absolute file_name outside root
            key = image.as_posix()
        splits.setdefault(row_split, {}).setdefault(key, (image, []))[1].extend(captions)
    _drop(cfg, problems)


def _metadata_file(folder: Path) -> Path | None:
    found = [folder / name for name in METADATA if (folder / name).is_file()]
    if len(found) > 1:
        raise DataError(f"{folder}: both {found[0].name} and {found[1].name}; keep one metadata file")
    return found[0] if found else None


@register_dataset("captions_folder")
def captions_folder(cfg: DatasetConfig) -> DatasetSource:
    """Images with ``metadata.jsonl``/``.csv`` (``file_name`` + captions) at root or in ``train/``, ``valid/``, ``test/``."""
    name, expected = "captions_folder", "metadata.jsonl or metadata.csv (or train/metadata.jsonl, ...)"
    if cfg.root is None and cfg.hub_id:
        return hub_captions(cfg)
    root, files, splits = _root(cfg, name, expected), _Files(), {}
    found = [(None, _metadata_file(root))]
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower() in FOLDER_SPLITS):
        found.append((FOLDER_SPLITS[folder.name.lower()], _metadata_file(folder)))
    found = [(split, path) for split, path in found if path is not None]
    if not found:
        raise DataError(f"[dataset] {name}: root {str(root)!r} has no metadata file; expected {expected}")
    for split, path in found:
        _folder_metadata(cfg, path, root, split, splits, files)
    return _source(name, splits)


# --- COCO Captions -------------------------------------------------------------------------------
def _coco_split(cfg: DatasetConfig, path: Path, folder: Path, files: _Files) -> Images:
    """One ``captions_*2017.json``: captions grouped by image, in ``images`` order."""
    data = _read_json(path, ("images", "annotations"), "COCO captions JSON with images and annotations")
    images: Images = {}
    for n, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise DataError(
                f"{path}: images[{n}] has no id or file_name; expected {{'id': int, 'file_name': str}}"
            )
        images[str(image["id"])] = (files(folder / image["file_name"]), [])
    orphans = []
    for n, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise DataError(
                f"{path}: annotations[{n}] has no image_id or caption; expected {{'image_id', 'caption'}}"
            )
        entry = images.get(str(ann["image_id"]))
        if entry is None:
            orphans.append(
                f"{path}: annotation {ann.get('id', n)} has image_id {ann['image_id']} which is not in images"
            )
        else:
            entry[1].append(ann["caption"])
    _drop(cfg, orphans)
    return images


def _karpathy(
    path: Path, key_of: Callable[[dict], str], path_of: Callable[[dict], Path]
) -> dict[str, Images]:
    """Karpathy's ``dataset_{coco,flickr30k}.json``: ``images[]`` with ``split`` and ``sentences[].raw``."""
    data = _read_json(path, ("images",), "Karpathy split JSON (caption_datasets.zip)")
    splits: dict[str, Images] = {}
    for n, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("filename"), str):
            raise DataError(f"{path}: images[{n}] has no filename; expected filename, split and sentences")
        split = KARPATHY_SPLITS.get(image.get("split"))
        if split is None:
            raise DataError(
                f"{path}: images[{n}] has split {image.get('split')!r}; expected train, restval, val or test"
            )
        sentences = image.get("sentences")
        if not isinstance(sentences, list) or not all(
            isinstance(s, dict) and isinstance(s.get("raw"), str) for s in sentences
        ):
            raise DataError(
                f"{path}: images[{n}] ({image['filename']}) needs sentences as a list of {{'raw': str}}"
            )
        splits.setdefault(split, {})[key_of(image)] = (path_of(image), [s["raw"] for s in sentences])
    return splits


def _coco_id(image: dict) -> str:
    return str(image.get("cocoid", Path(image["filename"]).stem))


def _coco_karpathy_image(root: Path, files: _Files, image: dict) -> Path:
    """``root/filepath/filename`` (2014 names), else the 2017 file of the same COCO id (map by id)."""
    listed = files(root / image.get("filepath", "") / image["filename"])
    if listed.is_file() or "cocoid" not in image:
        return listed
    name = f"{int(image['cocoid']):012d}.jpg"
    return next(
        (files(root / p / name) for p in ("train2017", "val2017") if files(root / p / name).is_file()), listed
    )


@register_dataset("coco_captions")
def coco_captions(cfg: DatasetConfig) -> DatasetSource:
    """COCO Captions: Karpathy ``dataset_coco.json`` (5k test) if present, else 2017 train -> train, val -> valid."""
    if cfg.root is None and cfg.hub_id:
        return hub_captions(cfg)
    root, files = _root(cfg, "coco_captions", COCO_EXPECTED), _Files()
    karpathy = _first([root, root / "annotations"], ("dataset_coco.json",))
    if karpathy is not None:
        splits = _karpathy(karpathy, _coco_id, lambda image: _coco_karpathy_image(root, files, image))
        return _source("coco_captions", splits)
    splits = {}
    for split, part in (("train", "train2017"), ("valid", "val2017")):
        path = root / "annotations" / f"captions_{part}.json"
        if not path.is_file():
            raise DataError(f"{path}: file not found; expected {COCO_EXPECTED}")
        splits[split] = _coco_split(cfg, path, root / part, files)
    return _source("coco_captions", splits)


# --- Flickr30k -----------------------------------------------------------------------------------
def _flickr_images(root: Path) -> Path:
    """The image folder: ``flickr30k-images/`` (official), Kaggle's nested ``flickr30k_images/``, ``images/`` or root."""
    for name in FLICKR_FOLDERS:
        folder = root / name
        if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            return folder
    return root


def _flickr_tokens(cfg: DatasetConfig, path: Path) -> list[tuple[str, str]]:
    """``(file, caption)`` pairs of ``results_20130124.token`` (``<file>#<n>\\t<caption>``) or Kaggle ``results.csv``."""
    kaggle, pairs, problems = path.suffix == ".csv", [], []
    lines = _text(path).split("\n")
    for n, line in enumerate(lines[1:] if kaggle else lines, 2 if kaggle else 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if kaggle:  # "image_name| comment_number| comment": "| " separates the fields
            name, *rest = line.split("|", 2)
            name, caption = name.strip(), rest[-1] if len(rest) == 2 else None
            broken = KAGGLE_BROKEN_ROW.fullmatch(rest[0]) if len(rest) == 1 else None
            caption = (
                broken.group(1) if broken else caption[1:] if caption and caption[:1] == " " else caption
            )
        else:
            head, _, caption = line.partition("\t")
            name = head.rpartition("#")[0] if "\t" in line else ""
        if not name or caption is None:
            form = "image_name| comment_number| comment" if kaggle else "<file>.jpg#<n>\\t<caption>"
            problems.append(f"{path}:{n}: expected {form!r}, got {line[:60]!r}")
            continue
        pairs.append((name, caption))
    _drop(cfg, problems)
    return pairs


@register_dataset("flickr30k")
def flickr30k(cfg: DatasetConfig) -> DatasetSource:
    """Flickr30k: Karpathy ``dataset_flickr30k.json`` (29k/1,014/1k), else the token file as one train split."""
    if cfg.root is None and cfg.hub_id:
        return hub_captions(cfg)
    root, files = _root(cfg, "flickr30k", FLICKR_EXPECTED), _Files()
    images = _flickr_images(root)
    karpathy = _first([root, root / "annotations"], ("dataset_flickr30k.json",))
    if karpathy is not None:
        splits = _karpathy(
            karpathy, lambda i: Path(i["filename"]).stem, lambda i: files(images / i["filename"])
        )
        return _source("flickr30k", splits)
    tokens = _first([root, root / "annotations", images, root / "flickr30k_images"], FLICKR_TOKENS)
    if tokens is None:
        raise DataError(
            f"[dataset] flickr30k: root {str(root)!r} has no caption file; expected {FLICKR_EXPECTED}"
        )
    train: Images = {}
    for name, caption in _flickr_tokens(cfg, tokens):
        train.setdefault(Path(name).stem, (files(images / name), []))[1].append(caption)
    return _source("flickr30k", {"train": train})


# --- Hub -----------------------------------------------------------------------------------------
def _hub_split(cfg: DatasetConfig, where: str, split: str, ds: datasets.Dataset) -> datasets.Dataset:
    """One Hub split reduced to ``image``/``captions``/``image_id`` (no cache files written next to the data)."""
    columns, image = ds.column_names, cfg.image_column or "image"
    listed = ", ".join(columns)
    if image not in columns:
        raise DataError(
            f"{where}: {split} has no image column {image!r} (columns: {listed}); set image_column"
        )
    caption_columns = _caption_columns(columns, cfg)
    if not caption_columns:
        raise DataError(
            f"{where}: {split} has no caption column (columns: {listed}); expected {_caption_hint(cfg)}"
        )
    captions = [_as_captions(list(row), where) for row in zip(*(ds[c] for c in caption_columns))]
    id_column = next((c for c in ID_COLUMNS if c in columns), None)
    ids = [str(v) for v in ds[id_column]] if id_column else [str(i) for i in range(len(ds))]
    out = ds.select_columns([image])
    if image != "image":
        out = out.rename_column(image, "image")
    try:
        out = out.cast_column("image", IMAGE_TYPE)
    except (ValueError, TypeError, pa.ArrowException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{where}: {split} column {image!r} is not an image ({first}); set image_column"
        ) from None
    out = out.add_column("captions", captions, feature=FEATURES["captions"])
    return out.add_column("image_id", ids, feature=FEATURES["image_id"])


@register_dataset("hub_captions")
def hub_captions(cfg: DatasetConfig) -> DatasetSource:
    """Any Hub id or local dataset folder (``hub_id``) with an image column and a caption column."""
    dsd = load_hub(cfg, None)
    where = f"[dataset] hub_id {cfg.hub_id!r}"
    splits = datasets.DatasetDict({split: _hub_split(cfg, where, split, ds) for split, ds in dsd.items()})
    return DatasetSource(splits, image_column="image", label_column="captions")

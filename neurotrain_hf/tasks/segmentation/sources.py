"""2D segmentation dataset builders: DRIVE, CHASE_DB1, STARE, HRF, ISIC 2016-2018, image/mask folders, Hub.

Local builders read ``[dataset] root`` in the dataset's official layout, as extracted from its download
(``docs/dataset-layouts.md``), never a converted copy. Every split has the columns ``image``, ``mask`` (the
first observer's annotation; None where a split ships none), ``fov`` (the official field-of-view mask, or
None), ``id`` and ``source`` (the dataset name, for per-source metrics). Image columns are
``datasets.Image(decode=False)`` values pointing at the original files; STARE's gzipped PPMs are stored as
their gunzipped bytes next to the original path. Rows are sorted by id.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource, register_dataset
from ...data.splits import SPLIT_ALIASES, load_hub
from ...errors import DataError

IMAGE_TYPE = datasets.Image(decode=False)
FEATURES = datasets.Features(
    {
        "image": IMAGE_TYPE,
        "mask": IMAGE_TYPE,
        "fov": IMAGE_TYPE,
        "id": datasets.Value("string"),
        "source": datasets.Value("string"),
    }
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".webp", ".ppm", ".pgm"}
MASK_SUFFIXES = ("_mask", "_masks", "_segmentation", "_seg", "_label", "_labels", "_gt", "_annotation")
FOV_SUFFIXES = ("_fov", "_mask")
HUB_MASK_COLUMNS = ("mask", "label", "annotation", "segmentation")
FOLDER_SPLITS = {**SPLIT_ALIASES, "training": "train", "testing": "test"}

Row = dict  # {"image": Path, "mask": Path | None, "fov": Path | None, "id": str}
Index = tuple[dict[str, Path], Callable[[str], str]]  # files by sample id, expected file for an id


# --- shared helpers ------------------------------------------------------------------------------
def _error(name: str, message: str) -> DataError:
    return DataError(f"[dataset] {name}: {message}")


def _files(folder: Path, recursive: bool = False) -> list[Path]:
    """Regular, non-hidden files of ``folder`` (sorted)."""
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in entries if p.is_file() and not p.name.startswith("."))


def _gz_twin(a: Path, b: Path) -> Path | None:
    """The plain file when one of ``a``/``b`` is the other's ``.gz`` (a gunzipped copy kept next to it)."""
    if a.name.lower() == b.name.lower() + ".gz":
        return b
    if b.name.lower() == a.name.lower() + ".gz":
        return a
    return None


@dataclass(frozen=True)
class Files:
    """One kind of file: names in ``folder`` fully matching ``pattern`` (any case), keyed by its ``id`` group."""

    folder: Path
    pattern: str
    hint: str  # the expected file name, ``{id}`` standing for the sample id
    recursive: bool = False

    def expected(self, key: str = "*") -> str:
        return str(self.folder / ("**" if self.recursive else "") / self.hint.format(id=key))

    def load(self, name: str) -> Index:
        """Index the folder; a missing folder or one without matching files is a layout error."""
        if not self.folder.is_dir():
            raise _error(name, f"folder {self.folder} not found; expected {self.expected()}")
        regex, found = re.compile(self.pattern, re.IGNORECASE), {}
        for path in _files(self.folder, self.recursive):
            match = regex.fullmatch(path.name)
            if match is None:
                continue
            key = match.group("id")
            if key in found:
                keep = _gz_twin(found[key], path)
                if keep is None:
                    raise _error(name, f"two files for sample {key!r}: {found[key]} and {path}")
                path = keep
            found[key] = path
        if not found:
            raise _error(name, f"no files matching {self.expected()}")
        return found, self.expected


def _pair(
    name: str, images: Index, masks: Index | None, fovs: Index | None = None, labelled_only: bool = False
) -> list[Row]:
    """Join images with their mask/FOV files by id; each must have its counterpart (one-line errors)."""
    found, expected_image = images
    if labelled_only and masks is not None:
        found = {key: path for key, path in found.items() if key in masks[0]}
    rows = {key: {"image": path, "mask": None, "fov": None, "id": key} for key, path in found.items()}
    for column, index in (("mask", masks), ("fov", fovs)):
        if index is None:
            continue
        files, expected = index
        for key, row in rows.items():
            if key not in files:
                raise _error(name, f"{row['image']} has no {column}; expected {expected(key)}")
            row[column] = files[key]
        for key, path in files.items():
            if key not in rows:
                raise _error(name, f"{path} has no image; expected {expected_image(key)}")
    return list(rows.values())


def _ref(path: Path | None, name: str) -> dict | None:
    """``datasets.Image(decode=False)`` value: the absolute path, or the gunzipped bytes of a ``.gz`` file."""
    if path is None:
        return None
    path = path.absolute()
    if path.suffix.lower() != ".gz":
        return {"bytes": None, "path": str(path)}
    try:
        with gzip.open(path, "rb") as f:
            return {"bytes": f.read(), "path": str(path)}
    except (OSError, EOFError) as exc:
        raise _error(name, f"{path}: not a readable gzip file ({exc})") from None


def _split(rows: list[Row], name: str) -> datasets.Dataset:
    rows = sorted(rows, key=lambda row: row["id"])
    # arrow arrays bypass Image.encode_example, which would drop the bytes of a file that exists on disk
    columns: dict = {
        k: pa.array([_ref(r[k], name) for r in rows], type=IMAGE_TYPE.pa_type)
        for k in ("image", "mask", "fov")
    }
    columns["id"] = [row["id"] for row in rows]
    columns["source"] = [name] * len(rows)
    return datasets.Dataset.from_dict(columns, features=FEATURES)


def _source(name: str, splits: dict[str, list[Row]]) -> DatasetSource:
    kept = {split: rows for split, rows in splits.items() if rows}
    if not kept:
        raise _error(name, "no samples found")
    dsd = datasets.DatasetDict({split: _split(rows, name) for split, rows in kept.items()})
    return DatasetSource(dsd, image_column="image", label_column="mask")


def _root(cfg: DatasetConfig, name: str, markers: Iterable[str], expected: str) -> Path:
    """``cfg.root``, or its sub-folder, that holds one of the ``markers`` (glob patterns) of the layout."""
    if cfg.root is None:
        raise _error(name, f"set root to the folder holding the official files ({expected})")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise _error(name, f"root {str(root)!r}: folder not found")
    children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    for folder in (root, *children):
        if any(next(folder.glob(marker), None) is not None for marker in markers):
            return folder
    raise _error(name, f"root {str(root)!r} is not in the official layout; expected {expected}")


def _by_subject(rows: list[Row], is_train: Callable[[str], bool]) -> dict[str, list[Row]]:
    return {
        "train": [r for r in rows if is_train(r["id"])],
        "test": [r for r in rows if not is_train(r["id"])],
    }


# --- retinal vessel datasets ---------------------------------------------------------------------
@register_dataset("drive")
def drive(cfg: DatasetConfig) -> DatasetSource:
    """DRIVE: ``training/`` (20, 1st_manual + FOV) and ``test/`` (20; 1st_manual only in old copies)."""
    root = _root(cfg, "drive", ("training", "test"), "training/images/*_training.tif and test/ (DRIVE.zip)")
    splits = {}
    for split, folder in (("train", "training"), ("test", "test")):
        base = root / folder
        if split == "test" and not base.is_dir():
            continue
        images = Files(base / "images", rf"(?P<id>\d{{2}})_{folder}\.tiff?", f"{{id}}_{folder}.tif")
        fovs = Files(base / "mask", rf"(?P<id>\d{{2}})_{folder}_mask\.gif", f"{{id}}_{folder}_mask.gif")
        manual = Files(base / "1st_manual", r"(?P<id>\d{2})_manual1\.gif", "{id}_manual1.gif")
        image_index = images.load("drive")
        masks = manual.load("drive") if split == "train" or manual.folder.is_dir() else None
        splits[split] = _pair("drive", image_index, masks, fovs.load("drive"))
    return _source("drive", splits)


@register_dataset("chase_db1")
def chase_db1(cfg: DatasetConfig) -> DatasetSource:
    """CHASE_DB1 (flat folder, 1stHO labels, no FOV); train = subjects 01-10 (20), test = 11-14 (8)."""
    root = _root(cfg, "chase_db1", ("Image_[0-9]*",), "Image_01L.jpg and Image_01L_1stHO.png files")
    images = Files(root, r"(?P<id>Image_\d{2}[LR])\.jpe?g", "{id}.jpg").load("chase_db1")
    masks = Files(root, r"(?P<id>Image_\d{2}[LR])_1stHO\.png", "{id}_1stHO.png").load("chase_db1")
    rows = _pair("chase_db1", images, masks)
    return _source("chase_db1", _by_subject(rows, lambda key: int(key[6:8]) <= 10))


@register_dataset("stare")
def stare(cfg: DatasetConfig) -> DatasetSource:
    """STARE: the 20 images with ``.ah`` labels (searched recursively, gzipped or not); train = first 10 ids."""
    root = _root(cfg, "stare", ("**/im[0-9]*.ppm*",), "im0001.ppm.gz and im0001.ah.ppm.gz files")
    images = Files(root, r"(?P<id>im\d{4})\.ppm(?:\.gz)?", "{id}.ppm.gz", recursive=True).load("stare")
    masks = Files(root, r"(?P<id>im\d{4})\.ah\.ppm(?:\.gz)?", "{id}.ah.ppm.gz", recursive=True).load("stare")
    rows = _pair("stare", images, masks, labelled_only=True)
    # the 10/10 split by sorted id of mmsegmentation / bob.ip.binseg: im0001 ... im0139 train
    return _source("stare", _by_subject(rows, lambda key: int(key[2:]) <= 139))


@register_dataset("hrf")
def hrf(cfg: DatasetConfig) -> DatasetSource:
    """HRF (``images/``, ``manual1/``, ``mask/``): train = subjects 01-05 of each group (15), test = 06-15 (30)."""
    root = _root(
        cfg,
        "hrf",
        ("images/[0-9][0-9]_*", "manual1"),
        "images/01_h.jpg, manual1/01_h.tif and mask/01_h_mask.tif",
    )
    key = r"(?P<id>\d{2}_(?:h|g|dr))"
    images = Files(root / "images", rf"{key}\.jpe?g", "{id}.jpg").load("hrf")
    masks = Files(root / "manual1", rf"{key}\.tiff?", "{id}.tif").load("hrf")
    fovs = Files(root / "mask", rf"{key}_mask\.tiff?", "{id}_mask.tif").load("hrf")
    rows = _pair("hrf", images, masks, fovs)
    return _source("hrf", _by_subject(rows, lambda key: int(key[:2]) <= 5))


# --- ISIC skin lesions ---------------------------------------------------------------------------
ISIC_LAYOUTS = {  # split, input folder, ground-truth folder (official zip names)
    "isic2018": (
        ("train", "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"),
        ("valid", "ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth"),
        ("test", "ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth"),
    ),
    "isic2017": (
        ("train", "ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
        ("valid", "ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
        ("test", "ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),
    ),
    "isic2016": (
        ("train", "ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
        ("test", "ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"),
    ),
}


def _isic(cfg: DatasetConfig, name: str) -> DatasetSource:
    layout = ISIC_LAYOUTS[name]
    train_input = layout[0][1]
    root = _root(cfg, name, (train_input,), f"{train_input}/ISIC_*.jpg (the official zips, extracted)")
    splits = {}
    for split, inputs, truth in layout:
        if not (root / inputs).is_dir():
            if (root / truth).is_dir():
                raise _error(name, f"{root / truth} has no images; expected {root / inputs}/ISIC_*.jpg")
            continue
        images = Files(root / inputs, r"(?P<id>ISIC_\d{7})\.jpe?g", "{id}.jpg").load(name)
        masks = Files(root / truth, r"(?P<id>ISIC_\d{7})_segmentation\.png", "{id}_segmentation.png")
        splits[split] = _pair(name, images, masks.load(name) if masks.folder.is_dir() else None)
    return _source(name, splits)


@register_dataset("isic2018")
def isic2018(cfg: DatasetConfig) -> DatasetSource:
    """ISIC 2018 Task 1 lesion masks: official training (2594), validation (100) and test (1000) folders."""
    return _isic(cfg, "isic2018")


@register_dataset("isic2017")
def isic2017(cfg: DatasetConfig) -> DatasetSource:
    """ISIC 2017 Part 1 lesion masks: official training (2000), validation (150) and test v2 (600) folders."""
    return _isic(cfg, "isic2017")


@register_dataset("isic2016")
def isic2016(cfg: DatasetConfig) -> DatasetSource:
    """ISIC 2016 (ISBI) Part 1 lesion masks: official training (900) and test (379) folders."""
    return _isic(cfg, "isic2016")


# --- generic sources -----------------------------------------------------------------------------
def _stems(name: str, folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by file stem; two images with one stem are an error."""
    found: dict[str, Path] = {}
    for path in _files(folder):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in found:
            raise _error(
                name, f"two images named {path.stem!r} in {folder}: {found[path.stem].name}, {path.name}"
            )
        found[path.stem] = path
    return found


def _match_stems(name: str, folder: Path, images: dict[str, Path], suffixes: tuple[str, ...]) -> Index:
    """Annotation files of ``folder`` keyed by their image's stem (exact stem, or stem + a suffix)."""
    found: dict[str, Path] = {}
    for stem, path in _stems(name, folder).items():
        key = stem
        if key not in images:
            tail = next((s for s in suffixes if stem.lower().endswith(s) and len(stem) > len(s)), "")
            key = stem[: len(stem) - len(tail)]
        if key in found:
            raise _error(name, f"two annotations for image {key!r}: {found[key]} and {path}")
        found[key] = path
    return found, lambda key: f"{folder / key}.png (or {key}_mask.png, any image format)"


def _folder_split(name: str, base: Path, masks_required: bool) -> list[Row]:
    images = _stems(name, base / "images")
    if not images:
        raise _error(name, f"no image files in {base / 'images'}")
    index: Index = (images, lambda key: f"{base / 'images' / key}.<png|jpg|tif|...>")
    masks = fovs = None
    if (base / "masks").is_dir():
        masks = _match_stems(name, base / "masks", images, MASK_SUFFIXES)
    elif masks_required:
        raise _error(name, f"folder {base / 'masks'} not found; expected masks/<image stem>[_mask].png")
    fov_folder = next((base / f for f in ("fovs", "fov") if (base / f).is_dir()), None)
    if fov_folder is not None:
        fovs = _match_stems(name, fov_folder, images, FOV_SUFFIXES)
    return _pair(name, index, masks, fovs)


@register_dataset("segmentation_folder")
def segmentation_folder(cfg: DatasetConfig) -> DatasetSource:
    """Image/mask pairs matched by stem: ``root/{images,masks[,fovs]}`` or ``root/<split>/{images,masks}``."""
    name = "segmentation_folder"
    expected = "images/ and masks/ (or train/images, train/masks; valid/ and test/ optional)"
    root = _root(cfg, name, ("images", "*/images"), expected)
    if (root / "images").is_dir():
        return _source(name, {"train": _folder_split(name, root, True)})
    bases: dict[str, Path] = {}
    for folder in sorted(p for p in root.iterdir() if (p / "images").is_dir()):
        split = FOLDER_SPLITS.get(folder.name.lower())
        if split is None:
            continue
        if split in bases:
            raise _error(name, f"{bases[split]} and {folder} are both the {split} split")
        bases[split] = folder
    if "train" not in bases:
        raise _error(name, f"root {str(root)!r} has no train split; expected {expected}")
    return _source(
        name,
        {s: _folder_split(name, bases[s], s == "train") for s in ("train", "valid", "test") if s in bases},
    )


@register_dataset("segmentation_hub")
def segmentation_hub(cfg: DatasetConfig) -> DatasetSource:
    """Any Hub id or local ``save_to_disk`` folder (``hub_id``, else ``root``) with image and mask columns."""
    dsd = load_hub(cfg, cfg.root)
    hub_id = str(cfg.hub_id or cfg.root)
    name = f"hub_id {hub_id!r}"
    splits = {}
    for split, ds in dsd.items():
        columns = ds.column_names
        image = cfg.image_column or next((c for c in ("image", "img") if c in columns), "image")
        mask = cfg.label_column or next((c for c in HUB_MASK_COLUMNS if c in columns), None)
        for wanted, option in ((image, "image_column"), (cfg.label_column, "label_column")):
            if wanted is not None and wanted not in columns:
                raise _error(
                    name, f"{split} has no column {wanted!r} (columns: {', '.join(columns)}); set {option}"
                )
        if mask is None and split == "train":
            looked = ", ".join(HUB_MASK_COLUMNS)
            raise _error(
                name, f"train has no mask column ({looked}; columns: {', '.join(columns)}); set label_column"
            )
        out = ds.select_columns([c for c in (image, mask) if c is not None])
        out = out.rename_columns(
            {old: new for old, new in ((image, "image"), (mask, "mask")) if old and old != new}
        )
        n = len(out)
        if mask is None:
            out = out.add_column("mask", [None] * n, feature=IMAGE_TYPE)
        out = out.add_column("fov", [None] * n, feature=IMAGE_TYPE)
        out = out.add_column("id", [str(i) for i in range(n)], feature=FEATURES["id"])
        out = out.add_column("source", [hub_id] * n, feature=FEATURES["source"])
        try:
            splits[split] = out.select_columns(list(FEATURES)).cast(FEATURES)
        except (ValueError, TypeError, pa.ArrowException) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _error(name, f"{split}: image/mask columns are not images ({first})") from None
    return DatasetSource(datasets.DatasetDict(splits), image_column="image", label_column="mask")

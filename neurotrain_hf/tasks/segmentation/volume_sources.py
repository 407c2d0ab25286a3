"""Volumetric (NIfTI) dataset builders: BTCV/Synapse, BraTS 2021 / 2023 GLI, Medical Segmentation Decathlon.

Each reads ``[dataset] root`` in the official layout (``docs/dataset-layouts.md`` 6-8) and returns splits of
file paths (``volume_rows``) and a ``VolumeSpec``; only listings and json are read here (voxels are checked
where loaded). Hidden files (``.DS_Store``, AppleDouble ``._*``) are ignored. With ``skip_bad_samples`` a bad
case is logged and skipped, its path listed in ``source.skipped``.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import datasets

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource, register_dataset
from ...errors import DataError
from .volume_spec import VolumeSource, VolumeSpec, volume_rows

logger = logging.getLogger(__name__)

NIFTI = re.compile(r"(?P<stem>.+?)\.nii(?:\.gz)?", re.IGNORECASE)
SPLIT_KEYS = {"training": "train", "validation": "valid", "test": "test"}  # MONAI split json keys
Row = dict  # {"image": [str], "mask": str | None, "id": str, "source": str}


# --- shared helpers ------------------------------------------------------------------------------
def _error(name: str, message: str) -> DataError:
    return DataError(f"[dataset] {name}: {message}")


def _stem(path: Path | str) -> str | None:
    """The file name without ``.nii``/``.nii.gz`` (any case), or None for other files."""
    match = NIFTI.fullmatch(Path(path).name)
    return match.group("stem") if match else None


def _visible(folder: Path, dirs: bool = False) -> list[Path]:
    """Non-hidden files (or folders) of ``folder``, sorted: no ``.DS_Store``, ``._*``, ``__MACOSX``."""
    keep = Path.is_dir if dirs else Path.is_file
    return sorted(p for p in folder.iterdir() if keep(p) and not p.name.startswith((".", "__MACOSX")))


def _root(cfg: DatasetConfig, name: str, expected: str) -> Path:
    if cfg.root is None:
        raise _error(name, f"set root to the folder holding the official files ({expected})")
    root = Path(cfg.root).expanduser().absolute()
    if not root.is_dir():
        raise _error(name, f"root {str(root)!r}: folder not found (expected {expected})")
    return root


def _row(image: list[Path], mask: Path | None, key: str, name: str) -> Row:
    return {"image": [str(p) for p in image], "mask": mask and str(mask), "id": key, "source": name}


class _Skips:
    """Bad samples: an error, or (``skip_bad_samples``) a warning and a record on the returned source."""

    def __init__(self, cfg: DatasetConfig, name: str) -> None:
        self.skip, self.name, self.paths = bool(cfg.skip_bad_samples), name, []

    def bad(self, path: Path | str, message: str) -> None:
        if not self.skip:
            raise _error(self.name, f"{path}: {message}")
        logger.warning("[dataset] %s: skipping %s: %s", self.name, path, message)
        self.paths.append(str(path))


def _source(name: str, splits: dict[str, list[Row]], spec: VolumeSpec, skips: _Skips) -> DatasetSource:
    kept = {split: rows for split, rows in splits.items() if rows}
    if not kept.get("train"):
        raise _error(name, f"no training cases found ({len(skips.paths)} bad cases skipped)")
    twice = [key for key, n in Counter(r["id"] for rows in kept.values() for r in rows).items() if n > 1]
    if twice:
        raise _error(name, f"case {twice[0]!r} is listed twice (in one split or in two)")
    dsd = datasets.DatasetDict({split: volume_rows(rows) for split, rows in kept.items()})
    source = VolumeSource(
        dsd, image_column="image", label_column="mask", volume=spec, skipped=list(skips.paths)
    )
    return source


def _load_json(name: str, path: Path) -> dict:
    """A MONAI / MSD style json object with a ``training`` (or ``validation``/``test``) list."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _error(name, f"{path}: not a readable json file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not any(isinstance(data.get(k), list) for k in SPLIT_KEYS):
        raise _error(name, f"{path}: expected a json object with a 'training' list (and 'validation')")
    return data


def _split_json(cfg: DatasetConfig, name: str, root: Path, default: Path | None = None) -> tuple | None:
    """The split json: ``split_file`` (as given, else under root), else ``default`` when it exists."""
    path = Path(cfg.split_file).expanduser() if cfg.split_file else default
    if cfg.split_file and not path.is_file() and (root / path).is_file():
        path = root / path  # relative to root
    if cfg.split_file and not path.is_file():
        raise _error(name, f"split_file {str(path)!r} not found")
    return (path, _load_json(name, path)) if path is not None and path.is_file() else None


def _resolve(rel: str, bases: tuple[Path, ...]) -> Path:
    """A json path (``./`` prefix tolerated) under the first base that has it (else under the first base)."""
    rel = rel[2:] if rel.startswith("./") else rel
    if Path(rel).is_absolute():
        return Path(rel)
    return next((b / rel for b in bases if (b / rel).exists()), bases[0] / rel)


def _json_rows(name: str, data: dict, where: Path, bases: tuple, skips: _Skips) -> dict[str, list[Row]]:
    """Rows of a MONAI-style ``{"training": [{"image", "label"}], ...}``; unlabelled test entries dropped."""
    splits: dict[str, list[Row]] = {}
    for key, split in SPLIT_KEYS.items():
        entries = data.get(key)
        if not isinstance(entries, list):
            continue
        rows = splits.setdefault(split, [])
        for entry in entries:
            image = entry.get("image") if isinstance(entry, dict) else entry
            label = entry.get("label") if isinstance(entry, dict) else None
            if label is None and split == "test":
                continue  # MSD / dataset_0.json test lists: images without labels, not usable for scoring
            if not isinstance(image, str) or not isinstance(label, str):
                raise _error(name, f"{where}: {key} entry {entry!r} needs 'image' and 'label' paths")
            paths = [_resolve(image, bases), _resolve(label, bases)]
            missing = next((p for p in paths if not p.is_file()), None)
            if missing is not None:
                skips.bad(missing, f"listed in {where.name} ({key}) but not found")
                continue
            rows.append(_row(paths[:1], paths[1], _stem(paths[0]) or paths[0].name, name))
    return splits


# --- BTCV / Synapse multi-atlas abdomen ----------------------------------------------------------
BTCV_LABELS = [
    "background", "spleen", "right kidney", "left kidney", "gallbladder", "esophagus", "liver", "stomach",
    "aorta", "inferior vena cava", "portal and splenic vein", "pancreas", "right adrenal gland",
    "left adrenal gland",
]  # fmt: skip
BTCV_TRAIN = {f"{i:04d}" for i in (*range(1, 11), *range(21, 35))}  # MONAI dataset_0.json: 24 training
BTCV_VALID = {f"{i:04d}" for i in range(35, 41)}  # and 6 validation cases
BTCV_EXPECTED = (
    "RawData/Training/img/img0001.nii.gz with Training/label/label0001.nii.gz (Synapse RawData.zip), "
    "or imagesTr/img0001.nii.gz with labelsTr/label0001.nii.gz (MONAI dataset_0.json layout)"
)


def _numbered(name: str, folder: Path, prefix: str) -> dict[str, Path]:
    """``<prefix>NNNN.nii[.gz]`` files of ``folder`` by their 4-digit number."""
    found: dict[str, Path] = {}
    regex = re.compile(rf"{prefix}(\d{{4}})", re.IGNORECASE)
    for path in _visible(folder) if folder.is_dir() else []:
        match = regex.fullmatch(_stem(path) or "")
        if match is None:
            continue
        if match.group(1) in found:
            raise _error(name, f"two files for case {match.group(1)}: {found[match.group(1)]} and {path}")
        found[match.group(1)] = path
    if not found:
        raise _error(name, f"no {prefix}NNNN.nii.gz files in {folder} (expected {BTCV_EXPECTED})")
    return found


def _btcv(cfg: DatasetConfig, name: str) -> DatasetSource:
    root = _root(cfg, name, BTCV_EXPECTED)
    layouts = [(b / "Training" / "img", b / "Training" / "label", b) for b in (root, root / "RawData")]
    layouts += [(root / "imagesTr", root / "labelsTr", root)]
    found = next((layout for layout in layouts if layout[0].is_dir()), None)
    if found is None:
        raise _error(name, f"root {str(root)!r} is not in the BTCV layout; expected {BTCV_EXPECTED}")
    img_dir, label_dir, base = found
    skips = _Skips(cfg, name)
    spec = VolumeSpec(label_names=list(BTCV_LABELS), modality="CT")
    split = _split_json(cfg, name, base, default=base / "dataset_0.json")
    if split is not None:
        return _source(name, _json_rows(name, split[1], split[0], (base, root), skips), spec, skips)
    images, labels = _numbered(name, img_dir, "img"), _numbered(name, label_dir, "label")
    splits: dict[str, list[Row]] = {"train": [], "valid": []}
    unlisted: list[str] = []
    for case in sorted(set(images) | set(labels)):
        if case not in labels:
            skips.bad(images[case], f"has no label; expected {label_dir / f'label{case}.nii.gz'}")
        elif case not in images:
            skips.bad(labels[case], f"has no image; expected {img_dir / f'img{case}.nii.gz'}")
        elif case in BTCV_TRAIN or case in BTCV_VALID:
            row = _row([images[case]], labels[case], _stem(images[case]) or case, name)
            splits["train" if case in BTCV_TRAIN else "valid"].append(row)
        else:
            unlisted.append(case)
    if unlisted:
        why = "in neither the standard training nor validation list; left out (a split_file can use them)"
        logger.warning("[dataset] %s: cases %s are %s", name, ", ".join(unlisted), why)
    return _source(name, splits, spec, skips)


@register_dataset("btcv")
def btcv(cfg: DatasetConfig) -> DatasetSource:
    """BTCV abdomen CT, 13 organs: Synapse ``RawData/Training/{img,label}`` or MONAI ``imagesTr/labelsTr``."""
    return _btcv(cfg, "btcv")


@register_dataset("synapse")
def synapse(cfg: DatasetConfig) -> DatasetSource:
    """Alias of ``btcv`` (the Synapse multi-atlas abdomen data)."""
    return _btcv(cfg, "synapse")


# --- BraTS 2021 / 2023 GLI -----------------------------------------------------------------------
BRATS_CASE = {2021: re.compile(r"BraTS2021_\d+"), 2023: re.compile(r"BraTS-GLI-\d+-\d+")}
BRATS_FILES = {  # edition -> separator, canonical channel order (t1, t1ce, t2, flair) of the file suffixes
    2021: ("_", ("t1", "t1ce", "t2", "flair")),
    2023: ("-", ("t1n", "t1c", "t2w", "t2f")),
}
BRATS_EXPECTED = (
    "case folders BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz (BraTS 2021) or "
    "BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz (BraTS 2023 GLI)"
)
BRATS_LABELS = ["background", "necrotic core", "edema", "enhancing tumor"]
BRATS_REGIONS = {"ET": [3], "TC": [1, 3], "WT": [1, 2, 3]}  # in training labels
BRATS_SUFFIX = re.compile(r".*[_-](t1|t1ce|t2|flair|t1n|t1c|t2w|t2f)", re.IGNORECASE)
BRATS_ORDER = {s: i for _, suffixes in BRATS_FILES.values() for i, s in enumerate(suffixes)}


def _brats_cases(folder: Path) -> dict[int, list[Path]]:
    cases = {e: [s for s in _visible(folder, True) if rx.fullmatch(s.name)] for e, rx in BRATS_CASE.items()}
    return {e: found for e, found in cases.items() if found}


def _brats_case(case: Path, edition: int) -> tuple[list[Path | str], Path | None]:
    """A case folder's 4 channel files (a missing one as its expected name) and seg file (or None)."""
    sep, suffixes = BRATS_FILES[edition]
    files = {(_stem(p) or "").lower(): p for p in _visible(case) if _stem(p)}
    found = [files.get(f"{case.name}{sep}{s}".lower(), f"{case.name}{sep}{s}.nii.gz") for s in suffixes]
    return found, files.get(f"{case.name}{sep}seg".lower())


def _brats(cfg: DatasetConfig, name: str, want: int | None) -> DatasetSource:
    root = _root(cfg, name, BRATS_EXPECTED)
    cases = _brats_cases(root)
    if not cases:
        holders = [(sub, c) for sub in _visible(root, dirs=True) if (c := _brats_cases(sub))]
        if len(holders) != 1:
            found = f" (found {', '.join(h.name for h, _ in holders)}; set root to one)" if holders else ""
            raise _error(
                name, f"root {str(root)!r} is not in the BraTS layout; expected {BRATS_EXPECTED}{found}"
            )
        root, cases = holders[0]
    if len(cases) > 1:
        raise _error(name, f"{root} mixes BraTS 2021 (BraTS2021_*) and BraTS 2023 (BraTS-GLI-*) case folders")
    edition, folders = next(iter(cases.items()))
    if want is not None and edition != want:
        use = f"use name = 'brats{edition}' or 'brats'"
        raise _error(name, f"{root} holds BraTS {edition} cases ({folders[0].name}), not BraTS {want}; {use}")
    skips = _Skips(cfg, name)
    by_name = {f.name: f for f in folders}
    split = _split_json(cfg, name, root)
    where = split[0] if split else root
    entries = split[1] if split else {"training": [f.name for f in folders]}
    splits: dict[str, list[Row]] = {}
    for key, out in SPLIT_KEYS.items():
        if not isinstance(entries.get(key), list):
            continue
        found = [_brats_row(name, entry, root, where, by_name, edition, skips) for entry in entries[key]]
        cases = [row for row in found if row is not None]
        if cases and all(row["mask"] is None for row in cases):
            what = "no labelled cases" if split is None else f"the {key} split has no labels"
            raise _error(name, f"{where}: {what} (no *seg.nii.gz in the case folders: validation data?)")
        for row in cases:
            if row["mask"] is None:
                seg = f"{row['id']}{BRATS_FILES[edition][0]}seg.nii.gz"
                skips.bad(Path(row["image"][0]).parent, f"missing {seg} (the {key} cases need labels)")
        splits.setdefault(out, []).extend(row for row in cases if row["mask"] is not None)
    label_map = {0: 0, 1: 1, 2: 2, 4: 3} if edition == 2021 else {0: 0, 1: 1, 2: 2, 3: 3}  # ET 4 -> 3
    spec = VolumeSpec(list(BRATS_LABELS), "MR", ["t1", "t1ce", "t2", "flair"], label_map, BRATS_REGIONS)
    return _source(name, splits, spec, skips)


def _brats_row(name: str, entry: object, root: Path, where: Path, by_name: dict, edition: int, skips: _Skips):
    """A case folder name or an ``{"image": [4 paths], "label"}`` entry as a row (None when skipped)."""
    if isinstance(entry, dict) and isinstance(entry.get("image"), list):
        bases = (root, root.parent, where.parent)
        paths = [_resolve(str(p), bases) for p in entry["image"]]
        kinds = [(m.group(1).lower() if (m := BRATS_SUFFIX.fullmatch(_stem(p) or "")) else "") for p in paths]
        if len(paths) != 4 or len({BRATS_ORDER.get(k) for k in kinds} - {None}) != 4:
            raise _error(name, f"{where}: entry {entry['image']!r} needs the 4 files t1, t1ce, t2, flair")
        image = [p for _, p in sorted(zip(kinds, paths), key=lambda kp: BRATS_ORDER[kp[0]])]
        label = _resolve(entry["label"], bases) if isinstance(entry.get("label"), str) else None
        missing = next((p for p in [*image, label] if p is not None and not p.is_file()), None)
        if missing is not None:
            return skips.bad(missing, f"listed in {where.name} but not found")
        return _row(image, label, paths[0].parent.name, name)
    ref = str(entry.get("image") if isinstance(entry, dict) else entry)
    case = by_name.get(Path(ref).name)
    if case is None:
        return skips.bad(root / ref, f"case folder listed in {where.name} not found")
    files, label = _brats_case(case, edition)
    missing_name = next((p for p in files if isinstance(p, str)), None)
    if missing_name is not None:
        return skips.bad(case, f"missing {missing_name}")
    return _row([Path(p) for p in files], label, case.name, name)


@register_dataset("brats")
def brats(cfg: DatasetConfig) -> DatasetSource:
    """BraTS 2021 or 2023 GLI training data (edition from the names); channels t1, t1ce, t2, flair."""
    return _brats(cfg, "brats", None)


@register_dataset("brats2021")
def brats2021(cfg: DatasetConfig) -> DatasetSource:
    """BraTS 2021 training data only (``BraTS2021_00000/BraTS2021_00000_t1.nii.gz``; ET raw label 4)."""
    return _brats(cfg, "brats2021", 2021)


@register_dataset("brats2023")
def brats2023(cfg: DatasetConfig) -> DatasetSource:
    """BraTS 2023 GLI training data only (``BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1n.nii.gz``; ET 3)."""
    return _brats(cfg, "brats2023", 2023)


# --- Medical Segmentation Decathlon --------------------------------------------------------------
MSD_TASKS = {  # labels and modality of the 10 tasks, for a copy that lost its dataset.json
    "Task01_BrainTumour": (
        ["background", "edema", "non-enhancing tumor", "enhancing tumour"], ["FLAIR", "T1w", "t1gd", "T2w"]
    ),
    "Task02_Heart": (["background", "left atrium"], ["MRI"]),
    "Task03_Liver": (["background", "liver", "cancer"], ["CT"]),
    "Task04_Hippocampus": (["background", "Anterior", "Posterior"], ["MRI"]),
    "Task05_Prostate": (["background", "PZ", "TZ"], ["T2", "ADC"]),
    "Task06_Lung": (["background", "cancer"], ["CT"]),
    "Task07_Pancreas": (["background", "pancreas", "cancer"], ["CT"]),
    "Task08_HepaticVessel": (["background", "Vessel", "Tumour"], ["CT"]),
    "Task09_Spleen": (["background", "spleen"], ["CT"]),
    "Task10_Colon": (["background", "colon cancer primaries"], ["CT"]),
}  # fmt: skip
MSD_EXPECTED = "dataset.json, imagesTr/ and labelsTr/ (an extracted MSD TaskNN_Name.tar)"


def _msd_pairs(name: str, root: Path, skips: _Skips) -> list[Row]:
    """No dataset.json: sorted ``imagesTr/*.nii.gz`` paired with the same names in ``labelsTr/``."""
    logger.warning("[dataset] %s: no dataset.json in %s; pairing imagesTr/ and labelsTr/ by name", name, root)
    for folder in (root / "imagesTr", root / "labelsTr"):
        if not folder.is_dir():
            raise _error(name, f"folder {folder} not found; expected {MSD_EXPECTED}")
    labels = {p.name: p for p in _visible(root / "labelsTr") if _stem(p)}
    rows = []
    for image in (p for p in _visible(root / "imagesTr") if _stem(p)):
        if image.name in labels:
            rows.append(_row([image], labels[image.name], _stem(image) or image.name, name))
        else:
            skips.bad(image, f"has no label; expected {root / 'labelsTr' / image.name}")
    return rows


def _ordered(name: str, where: Path, table: object, what: str) -> list[tuple[int, str]]:
    if not isinstance(table, dict) or not table or not all(str(k).isdigit() for k in table):
        raise _error(name, f'{where}: {what!r} must be an object like {{"0": ...}} with integer keys')
    return sorted((int(k), str(v)) for k, v in table.items())


@register_dataset("msd")
def msd(cfg: DatasetConfig) -> DatasetSource:
    """A Medical Segmentation Decathlon task (e.g. ``Task09_Spleen``): ``dataset.json`` training list."""
    name = "msd"
    root = _root(cfg, name, MSD_EXPECTED)
    if not (root / "imagesTr").is_dir() and not (root / "dataset.json").is_file():
        tasks = [d for d in _visible(root, dirs=True) if (d / "imagesTr").is_dir()]
        if len(tasks) != 1:
            found = f" (found {', '.join(d.name for d in tasks)}; set root to one)" if tasks else ""
            raise _error(name, f"root {str(root)!r} is not in the MSD layout; expected {MSD_EXPECTED}{found}")
        root = tasks[0]
    skips = _Skips(cfg, name)
    meta_path = root / "dataset.json"
    meta = _load_json(name, meta_path) if meta_path.is_file() else None
    if meta is not None:
        labels = _ordered(name, meta_path, meta.get("labels"), "labels")
        modalities = [v for _, v in _ordered(name, meta_path, meta.get("modality"), "modality")]
    elif root.name in MSD_TASKS:
        names, modalities = MSD_TASKS[root.name]
        labels = list(enumerate(names))
    else:
        raise _error(name, f"{meta_path} not found; it names the labels (expected {MSD_EXPECTED})")
    split = _split_json(cfg, name, root)  # no default: the MSD training list is all train
    if split is not None:
        splits = _json_rows(name, split[1], split[0], (root,), skips)
    elif meta is not None:
        splits = _json_rows(name, {"training": meta.get("training", [])}, meta_path, (root,), skips)
    else:
        splits = {"train": _msd_pairs(name, root, skips)}
    label_map = {raw: i for i, (raw, _) in enumerate(labels) if raw != i}  # non-contiguous label keys
    modality = "CT" if modalities[0].upper() == "CT" else "MR"
    spec = VolumeSpec([v for _, v in labels], modality, list(modalities), label_map)
    return _source(name, splits, spec, skips)

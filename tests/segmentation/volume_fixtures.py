"""Tiny NIfTI fixture trees in the official layouts of BTCV, BraTS 2021 / 2023 GLI and MSD (docs section 6-8).

Each writer returns the folder to give as ``[dataset] root``. Volumes are small but meaningful: labelled
structures are ellipsoids brighter than their surroundings (CT in Hounsfield units, MR in arbitrary units),
with per-case jitter, realistic voxel spacings in the affine and the datasets' own dtypes and label values, so
the trees also serve for short training runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

Shape = tuple[int, int, int]
APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4058)  # a macOS ._* resource file
BTCV_TRAIN = [*range(1, 11), *range(21, 35)]  # MONAI dataset_0.json split
BTCV_VALID = list(range(35, 41))
BTCV_SHORT = ["background", "spleen", "rkid", "lkid", "gall", "eso", "liver", "sto", "aorta", "IVC", "veins"]
BTCV_SHORT += ["pancreas", "rad", "lad"]
BRATS_FOLDERS = {
    2021: "RSNA_ASNR_MICCAI_BraTS2021_TrainingData_16July2021",
    2023: "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData",
}
BRATS_MODALITIES = {2021: ("flair", "t1", "t1ce", "t2"), 2023: ("t1n", "t1c", "t2w", "t2f")}
BRATS_CASE_IDS = (0, 2, 3, 5, 6, 8, 9, 11, 12, 14)  # 5-digit ids with gaps, as in the release


def affine(spacing: Sequence[float], shape: Shape, flip_xy: bool = True) -> np.ndarray:
    """A scanner-style affine: RAS axes (x, y flipped for LPS-stored data), the volume centred at 0 mm."""
    signs = (-1.0, -1.0, 1.0) if flip_xy else (1.0, 1.0, 1.0)
    out = np.diag([*(s * d for s, d in zip(signs, spacing)), 1.0])
    out[:3, 3] = [-out[i, i] * (shape[i] - 1) / 2 for i in range(3)]
    return out


def save(data: np.ndarray, aff: np.ndarray, path: Path) -> Path:
    """Write a NIfTI-1 (gzipped when the name ends with .gz) with sform and qform set and mm units."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(data, aff)
    image.header.set_xyzt_units("mm", "sec")
    image.set_sform(aff, code=1)
    image.set_qform(aff, code=1)
    nib.save(image, str(path))
    return path


def ellipsoid(shape: Shape, center: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """A boolean ellipsoid; ``center`` and ``radii`` as fractions of the shape."""
    grid = np.meshgrid(*(np.arange(n) / max(n - 1, 1) for n in shape), indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1.0


def _jitter(rng: np.random.Generator, center: Sequence[float], amount: float = 0.04) -> list[float]:
    return [c + rng.uniform(-amount, amount) for c in center]


def _case_seed(case: str | int) -> int:
    return int("".join(ch for ch in str(case) if ch.isdigit()) or "0")


# --- BTCV ----------------------------------------------------------------------------------------
BTCV_ORGANS = (  # (label, center, radii (fractions), HU): brighter than the -100 HU fat around them
    (6, (0.35, 0.35, 0.5), (0.18, 0.16, 0.45), 60),  # liver
    (1, (0.68, 0.35, 0.5), (0.1, 0.09, 0.3), 50),  # spleen
    (2, (0.35, 0.68, 0.45), (0.07, 0.07, 0.25), 160),  # right kidney (contrast)
    (3, (0.65, 0.68, 0.45), (0.07, 0.07, 0.25), 160),  # left kidney
    (8, (0.5, 0.6, 0.5), (0.04, 0.04, 0.6), 220),  # aorta
)


def btcv_volume(case: str, shape: Shape = (24, 24, 12)) -> tuple[np.ndarray, np.ndarray]:
    """An int16 CT volume (air -1000, fat -100, organs 50-220 HU) and its uint8 label map (BTCV ids)."""
    rng = np.random.default_rng(_case_seed(case))
    body = ellipsoid(shape, (0.5, 0.5, 0.5), (0.47, 0.4, 2.0))
    ct = np.where(body, -100.0, -1000.0) + rng.normal(0, 10, shape)
    label = np.zeros(shape, np.uint8)
    for value, center, radii, hu in BTCV_ORGANS:
        blob = ellipsoid(shape, _jitter(rng, center), radii) & body
        ct[blob] = hu + rng.normal(0, 10, int(blob.sum()))
        label[blob] = value
    return np.round(ct).astype(np.int16), label


def write_btcv(
    root: Path,
    cases: Iterable[str] = ("0001", "0002", "0035"),
    layout: str = "raw",
    shape: Shape = (24, 24, 12),
    testing: Iterable[str] = ("0061",),
    dataset_json: bool = True,
    ext: str = ".nii.gz",
) -> Path:
    """BTCV as ``RawData/{Training/{img,label},Testing/img}`` (layout="raw", returns RawData) or the MONAI
    ``imagesTr/labelsTr/imagesTs`` + ``dataset_0.json`` layout (layout="monai", returns root)."""
    root = Path(root)
    aff = affine((0.8, 0.8, 3.0), shape)
    if layout == "raw":
        base = root / "RawData"
        img_dir, label_dir, test_dir = base / "Training/img", base / "Training/label", base / "Testing/img"
    elif layout == "monai":
        base = root
        img_dir, label_dir, test_dir = root / "imagesTr", root / "labelsTr", root / "imagesTs"
    else:
        raise ValueError(f"layout must be 'raw' or 'monai', not {layout!r}")
    cases = list(cases)
    for case in cases:
        ct, label = btcv_volume(case, shape)
        save(ct, aff, img_dir / f"img{case}{ext}")
        save(label, aff, label_dir / f"label{case}{ext}")
    for case in testing:
        save(btcv_volume(case, shape)[0], aff, test_dir / f"img{case}{ext}")
    if layout == "monai" and dataset_json:

        def entries(ids: list[int]) -> list[dict]:
            return [
                {"image": f"imagesTr/img{c}{ext}", "label": f"labelsTr/label{c}{ext}"}
                for c in cases
                if int(c) in ids
            ]

        meta = {
            "description": "btcv yucheng",
            "labels": {str(i): n for i, n in enumerate(BTCV_SHORT)},
            "modality": {"0": "CT"},
            "name": "btcv",
            "numTest": len(list(testing)),
            "numTraining": len(cases),
            "tensorImageSize": "3D",
            "test": [f"imagesTs/img{c}{ext}" for c in testing],
            "training": entries(BTCV_TRAIN),
            "validation": entries(BTCV_VALID),
        }
        (root / "dataset_0.json").write_text(json.dumps(meta, indent=4))
    return base


# --- BraTS ---------------------------------------------------------------------------------------
def brats_case_name(edition: int, number: int) -> str:
    return f"BraTS2021_{number:05d}" if edition == 2021 else f"BraTS-GLI-{number:05d}-000"


def brats_volumes(number: int, shape: Shape = (24, 24, 16), edition: int = 2021) -> tuple[dict, np.ndarray]:
    """Four float32 MR channels (by 2021 name) and the uint8 seg: necrotic core 1 inside an enhancing rim
    (4 in 2021, 3 in 2023) inside edema 2; each region is bright on the channel that shows it."""
    rng = np.random.default_rng(number)
    brain = ellipsoid(shape, (0.5, 0.5, 0.5), (0.42, 0.46, 0.44))
    center = _jitter(rng, (0.6, 0.45, 0.5), 0.06)
    edema = ellipsoid(shape, center, (0.3, 0.3, 0.3)) & brain
    tumor = ellipsoid(shape, center, (0.17, 0.17, 0.18)) & brain
    core = ellipsoid(shape, center, (0.09, 0.09, 0.1)) & brain
    seg = np.zeros(shape, np.uint8)
    seg[edema], seg[tumor], seg[core] = 2, 4 if edition == 2021 else 3, 1
    levels = {  # channel: (brain, edema, enhancing rim, necrotic core)
        "t1": (400, 380, 300, 200),
        "t1ce": (420, 400, 950, 250),
        "t2": (500, 1000, 900, 1100),
        "flair": (300, 850, 700, 500),
    }
    channels = {}
    for channel, (b, e, r, c) in levels.items():
        image = np.zeros(shape, np.float32)
        for mask, value in ((brain, b), (edema, e), (tumor, r), (core, c)):
            image[mask] = value
        image[brain] += rng.normal(0, 15, int(brain.sum())).astype(np.float32)
        channels[channel] = image
    return channels, seg


def write_brats(
    root: Path,
    edition: int = 2021,
    cases: int | Sequence[int] = 3,
    shape: Shape = (24, 24, 16),
    with_seg: bool = True,
    ds_store: bool = True,
) -> Path:
    """BraTS training data: ``<release folder>/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` (2021) or
    ``<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (2023 GLI); returns the release folder (holding the cases)."""
    base = Path(root) / BRATS_FOLDERS[edition]
    base.mkdir(parents=True, exist_ok=True)
    numbers = BRATS_CASE_IDS[:cases] if isinstance(cases, int) else list(cases)
    aff = np.diag([-1.0, -1.0, 1.0, 1.0])
    aff[1, 3] = shape[1] - 1  # BraTS (SRI24): 1 mm isotropic, LPS-stored
    sep = "_" if edition == 2021 else "-"
    names_2021 = ("flair", "t1", "t1ce", "t2")
    for number in numbers:
        case = brats_case_name(edition, number)
        channels, seg = brats_volumes(number, shape, edition)
        for name_2021, name in zip(names_2021, BRATS_MODALITIES[edition]):
            save(channels[name_2021], aff, base / case / f"{case}{sep}{name}.nii.gz")
        if with_seg:
            save(seg, aff, base / case / f"{case}{sep}seg.nii.gz")
    if ds_store:
        (base / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (base / brats_case_name(edition, numbers[0]) / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return base


# --- Medical Segmentation Decathlon --------------------------------------------------------------
SPLEEN_TRAIN = (2, 3, 6, 8, 9, 10, 12, 13, 14, 16)
SPLEEN_TEST = (1, 7, 11, 15)


def spleen_volume(number: int, shape: Shape = (24, 24, 12)) -> tuple[np.ndarray, np.ndarray]:
    """An int16 CT (fat -100 HU, spleen ~60 HU, a bright spine) and its 0/1 uint8 spleen label."""
    rng = np.random.default_rng(1000 + number)
    body = ellipsoid(shape, (0.5, 0.5, 0.5), (0.47, 0.4, 2.0))
    ct = np.where(body, -100.0, -1000.0) + rng.normal(0, 10, shape)
    ct[ellipsoid(shape, (0.5, 0.8, 0.5), (0.05, 0.05, 2.0))] = 500  # vertebrae, unlabelled
    spleen = ellipsoid(shape, _jitter(rng, (0.7, 0.4, 0.5), 0.05), (0.12, 0.1, 0.3)) & body
    ct[spleen] = 60 + rng.normal(0, 8, int(spleen.sum()))
    return np.round(ct).astype(np.int16), spleen.astype(np.uint8)


def _msd_json(name: str, modality: dict, labels: dict, train: list[str], test: list[str], **extra) -> dict:
    return {
        "name": name,
        "description": f"{name} segmentation",
        "reference": "Memorial Sloan Kettering Cancer Center",
        "licence": "CC-BY-SA 4.0",
        "release": "1.0 06/08/2018",
        "tensorImageSize": extra.get("tensorImageSize", "3D"),
        "modality": modality,
        "labels": labels,
        "numTraining": len(train),
        "numTest": len(test),
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in train],
        "test": [f"./imagesTs/{c}.nii.gz" for c in test],
    }


def write_msd_spleen(
    root: Path,
    cases: int = 4,
    shape: Shape = (24, 24, 12),
    test_cases: int = 2,
    appledouble: bool = True,
    dataset_json: bool = True,
) -> Path:
    """``Task09_Spleen/{dataset.json,imagesTr,labelsTr,imagesTs}`` with ``./`` paths in dataset.json and the
    tar's AppleDouble ``._spleen_2.nii.gz`` junk; returns the Task09_Spleen folder."""
    base = Path(root) / "Task09_Spleen"
    aff = affine((0.9, 0.9, 2.5), shape)
    train = [f"spleen_{n}" for n in SPLEEN_TRAIN[:cases]]
    test = [f"spleen_{n}" for n in SPLEEN_TEST[:test_cases]]
    for number, case in zip(SPLEEN_TRAIN, train):
        ct, label = spleen_volume(number, shape)
        save(ct, aff, base / "imagesTr" / f"{case}.nii.gz")
        save(label, aff, base / "labelsTr" / f"{case}.nii.gz")
    for number, case in zip(SPLEEN_TEST, test):
        save(spleen_volume(number, shape)[0], aff, base / "imagesTs" / f"{case}.nii.gz")
    if appledouble:
        for folder, case in (
            ("imagesTr", train[0]),
            ("labelsTr", train[0]),
            ("imagesTs", (test or train)[0]),
        ):
            (base / folder).mkdir(parents=True, exist_ok=True)
            (base / folder / f"._{case}.nii.gz").write_bytes(APPLEDOUBLE)
    if dataset_json:
        meta = _msd_json("Spleen", {"0": "CT"}, {"0": "background", "1": "spleen"}, train, test)
        (base / "dataset.json").write_text(json.dumps(meta, indent=4))
    return base


def write_msd_brain(root: Path, cases: int = 2, shape: Shape = (16, 16, 8)) -> Path:
    """``Task01_BrainTumour``: one 4-D float32 NIfTI per case (FLAIR, T1w, t1gd, T2w on the last axis) and
    labels 1 edema, 2 non-enhancing tumor, 3 enhancing tumour; returns the Task01_BrainTumour folder."""
    base = Path(root) / "Task01_BrainTumour"
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    train = [f"BRATS_{n:03d}" for n in range(1, cases + 1)]
    for number, case in enumerate(train, start=1):
        channels, seg = brats_volumes(number, shape, 2021)
        image = np.stack([channels[c] for c in ("flair", "t1", "t1ce", "t2")], axis=-1)
        msd_seg = np.select([seg == 2, seg == 1, seg == 4], [1, 2, 3], 0).astype(np.uint8)
        save(image, aff, base / "imagesTr" / f"{case}.nii.gz")
        save(msd_seg, aff, base / "labelsTr" / f"{case}.nii.gz")
    labels = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
    modality = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    meta = _msd_json("BRATS", modality, labels, train, [], tensorImageSize="4D")
    (base / "dataset.json").write_text(json.dumps(meta, indent=4))
    return base

"""``synthetic_3d``: small CT-like abdominal volumes written as NIfTI, the offline 3D default.

Each case is a body (soft tissue) in air with three labelled structures of different intensity and
shape: a large ellipsoid ("liver"), a sphere ("spleen") and a cylinder along z ("aorta"), placed at
random, with noise. Volumes are anisotropic (0.9 x 0.9 x 2.5 mm), of slightly different sizes, and
every other case is stored in LPS orientation, so the default run exercises orientation, resampling
and restoring predictions to each file's grid. Files are written once per setting under ``[dataset]
root`` or the neurotrain cache, then read like any other volume source.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource, register_dataset
from .fingerprint import digest
from .volume_cache import default_cache_root
from .volume_spec import VolumeSource, VolumeSpec, volume_rows

LABELS = ["background", "liver", "spleen", "aorta"]
SPACING = (0.9, 0.9, 2.5)
SPLIT_SIZES = {"train": 16, "valid": 4, "test": 6}
SEEDS = {"train": 0, "valid": 1, "test": 2}
GENERATOR_VERSION = 1


def make_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(int16 HU volume, uint8 label map) of one synthetic case, about 64 x 64 x 24 voxels."""
    shape = (int(rng.integers(58, 70)), int(rng.integers(58, 70)), int(rng.integers(20, 28)))
    x, y, z = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    cx, cy = shape[0] / 2, shape[1] / 2
    image = np.full(shape, -1000.0, np.float32)
    label = np.zeros(shape, np.uint8)
    body = ((x - cx) / (0.46 * shape[0])) ** 2 + ((y - cy) / (0.4 * shape[1])) ** 2 < 1
    image[body] = 40.0
    # liver: a large ellipsoid on one side
    lx, ly, lz = cx - rng.uniform(6, 12), cy + rng.uniform(-5, 5), shape[2] / 2 + rng.uniform(-2, 2)
    liver = ((x - lx) / rng.uniform(10, 14)) ** 2 + ((y - ly) / rng.uniform(8, 11)) ** 2 + (
        (z - lz) / rng.uniform(4, 6)
    ) ** 2 < 1
    # spleen: a sphere on the other side
    sx, sy, sz = cx + rng.uniform(10, 15), cy + rng.uniform(-8, 8), shape[2] / 2 + rng.uniform(-4, 4)
    radius = rng.uniform(7, 9)
    spleen = ((x - sx) / radius) ** 2 + ((y - sy) / radius) ** 2 + ((z - sz) / (radius * 0.36)) ** 2 < 1
    # aorta: a cylinder along z near the centre-back
    ax, ay, ar = cx + rng.uniform(-3, 3), cy + rng.uniform(8, 12), rng.uniform(2.5, 3.5)
    aorta = ((x - ax) ** 2 + (y - ay) ** 2 < ar**2) & body
    for value, mask, hu in ((1, liver & body, 110.0), (2, spleen & body, 70.0), (3, aorta, 210.0)):
        label[mask & (label == 0)] = value
        image[mask & (label == value)] = hu + rng.normal(0, 8)
    image += rng.normal(0, 18, shape).astype(np.float32)
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16), label


def case_affine(index: int, shape: tuple[int, ...]) -> np.ndarray:
    """RAS for even cases, LPS (x and y flipped, origin moved) for odd ones; same spacing."""
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-100.0, -80.0, -40.0]
    if index % 2:
        affine[0, 0], affine[1, 1] = -SPACING[0], -SPACING[1]
        affine[0, 3] = -100.0 + (shape[0] - 1) * SPACING[0]
        affine[1, 3] = -80.0 + (shape[1] - 1) * SPACING[1]
    return affine


def write_cases(folder: Path, sizes: dict[str, int]) -> dict[str, list[dict]]:
    """Write (or reuse) the NIfTI files of every split; returns the volume rows per split."""
    import nibabel as nib

    rows: dict[str, list[dict]] = {}
    for split, n in sizes.items():
        rng = np.random.default_rng(SEEDS[split])
        rows[split] = []
        for i in range(n):
            image, label = make_case(rng)
            stem = f"{split}_{i:03d}"
            img_path, lab_path = folder / f"{stem}.nii.gz", folder / f"{stem}_label.nii.gz"
            if not (img_path.is_file() and lab_path.is_file()):
                if i % 2:  # stored flipped: LPS voxel order
                    image, label = image[::-1, ::-1].copy(), label[::-1, ::-1].copy()
                affine = case_affine(i, image.shape)
                for path, data in ((img_path, image), (lab_path, label)):
                    tmp = path.with_name(f".{os.getpid()}.{path.name}")  # processes may write at once
                    nib.save(nib.Nifti1Image(data, affine), str(tmp))
                    tmp.replace(path)
            rows[split].append(
                {"image": [str(img_path)], "mask": str(lab_path), "id": stem, "source": "synthetic_3d"}
            )
    return rows


@register_dataset("synthetic_3d")
def synthetic_3d(cfg: DatasetConfig) -> DatasetSource:
    """Synthetic CT-like volumes (train 16 / valid 4 / test 6; ``max_samples`` caps each split)."""
    sizes = {k: min(n, cfg.max_samples or n) for k, n in SPLIT_SIZES.items()}
    key = digest({"sizes": sizes, "version": GENERATOR_VERSION})[:12]
    folder = Path(cfg.root) if cfg.root else default_cache_root() / "synthetic_3d" / key
    folder.mkdir(parents=True, exist_ok=True)
    rows = write_cases(folder, sizes)
    import datasets

    spec = VolumeSpec(label_names=list(LABELS), modality="CT", channel_names=["ct"])
    return VolumeSource(datasets.DatasetDict({k: volume_rows(v) for k, v in rows.items()}), volume=spec)

"""Preprocessed volumes cached on disk, reused across runs and invalidated by any change of settings.

One folder per case, named by the case id and a hash of its files (path, size, mtime), the processor's
settings and the label mapping: ``image.npy`` (C, X', Y', Z') float32 and ``label.npy`` uint8 on the
preprocessed grid (memory-mapped by the training transform), ``label_original.npy`` on the file's own
grid (what evaluation scores), and ``meta.json`` (both affines, the original shape and spacing, the
non-zero bounding box). Folders are written under a temporary name and renamed, so a crash or a
concurrent process never leaves a half-written entry.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .fingerprint import digest, file_identity
from .nifti import read_image, read_label, spacing_of
from .volume_processor import NeuroVolumeProcessor
from .volume_spec import VolumeSpec

CACHE_VERSION = 1
PROCESSOR_KEYS = (
    "num_channels",
    "spacing",
    "intensity",
    "clip_low",
    "clip_high",
    "intensity_mean",
    "intensity_std",
)


def default_cache_root() -> Path:
    """``$NEUROTRAIN_CACHE`` or ``~/.cache/neurotrain``."""
    return Path(os.environ.get("NEUROTRAIN_CACHE") or Path.home() / ".cache" / "neurotrain")


def cache_root(setting: str | None) -> Path | None:
    """Where preprocessed volumes go (``[dataset] preprocessed_dir``); None when set to ``off``."""
    if setting and setting.lower() in ("off", "none", "false"):
        return None
    return Path(setting) if setting else default_cache_root() / "preprocessed"


def case_key(row: dict[str, Any], processor: NeuroVolumeProcessor, spec: VolumeSpec) -> str:
    settings = {k: getattr(processor, k) for k in PROCESSOR_KEYS}
    payload = {
        "files": file_identity([*row["image"], row["mask"]]),
        "processor": settings,
        "labels": {str(k): v for k, v in spec.label_map.items()},
        "version": CACHE_VERSION,
    }
    return digest(payload)[:20]


def _bbox(image: np.ndarray) -> list[list[int]]:
    """[start, stop) per spatial axis of the voxels non-zero in any channel (the whole volume if none)."""
    nonzero = (image != 0).any(0)
    out = []
    for axis in range(nonzero.ndim):
        hits = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(nonzero.ndim) if a != axis)))
        out.append([int(hits[0]), int(hits[-1]) + 1] if hits.size else [0, nonzero.shape[axis]])
    return out


def write_case(row: dict[str, Any], processor: NeuroVolumeProcessor, spec: VolumeSpec, folder: Path) -> None:
    """Read, check and preprocess one case into ``folder`` (atomically)."""
    image, affine, _ = read_image(row["image"])
    label = read_label(row["mask"], spec, image.shape[1:], affine) if row["mask"] else None
    pre_image, pre_affine = processor.prepare(image, affine)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "image.npy", pre_image.numpy())
    if label is not None:
        np.save(tmp / "label.npy", processor.prepare_label(label, affine).numpy())
        np.save(tmp / "label_original.npy", label)
    meta = {
        "id": row["id"],
        "src_affine": pre_affine.tolist(),
        "dst_affine": affine.tolist(),
        "shape": list(image.shape[1:]),
        "preprocessed_shape": list(pre_image.shape[1:]),
        "spacing": spacing_of(affine).tolist(),
        "bbox": _bbox(pre_image.numpy()),
        "labelled": label is not None,
    }
    (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    try:
        os.replace(tmp, folder)
    except OSError:  # another process wrote the same entry first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def cached_case(
    row: dict[str, Any], processor: NeuroVolumeProcessor, spec: VolumeSpec, root: Path
) -> tuple[Path, bool]:
    """The cache folder of one case, written when missing; returns (folder, reused?)."""
    folder = root / f"{row['id']}-{case_key(row, processor, spec)}"
    if (folder / "meta.json").is_file():
        return folder, True
    root.mkdir(parents=True, exist_ok=True)
    write_case(row, processor, spec, folder)
    return folder, False


def load_meta(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))

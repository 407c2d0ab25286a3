"""The dataset fingerprint, as nnU-Net computes it: spacings, shapes and foreground intensities.

Read once from the training cases (voxels inside the label's foreground, up to 10,000 per case, from a
seeded generator) and cached by the identity of those files. It sets the default target spacing (the
median) and the CT normalisation (clip to the foreground's 0.5 / 99.5 percentiles, then z-score with
its mean and standard deviation), and is written to the run folder as ``fingerprint.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from .nifti import read_image, read_label
from .volume_spec import VolumeSpec

SAMPLES_PER_CASE = 10_000
FINGERPRINT_VERSION = 1


def file_identity(paths: Sequence[str | None]) -> list[list]:
    """(absolute path, size, mtime) of each file: what a cached result is valid for."""
    out = []
    for path in paths:
        if path is None:
            out.append(None)
            continue
        stat = os.stat(path)
        out.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    return out


def digest(payload: Any) -> str:
    """A stable hash of a JSON-able payload."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def ras_order(values: Sequence[float], affine: np.ndarray) -> list[float]:
    """Per-axis values (spacing, shape) reordered to the axes of the RAS-oriented array."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    out = [0.0] * 3
    for axis in range(3):
        out[int(ornt[axis, 0])] = float(values[axis])
    return out


def _case(image_paths: Sequence[str], mask: str, spec: VolumeSpec, rng: np.random.Generator) -> dict:
    from .nifti import spacing_of

    image, affine, _ = read_image(image_paths)
    label = read_label(mask, spec, image.shape[1:], affine)
    foreground = label > 0
    if not foreground.any():
        foreground = (image != 0).any(0)
    voxels = image[:, foreground]
    if voxels.shape[1] > SAMPLES_PER_CASE:
        voxels = voxels[:, rng.choice(voxels.shape[1], SAMPLES_PER_CASE, replace=False)]
    return {
        "spacing": ras_order(spacing_of(affine), affine),
        "shape": ras_order(image.shape[1:], affine),
        "voxels": voxels,
        "classes": np.bincount(label.ravel(), minlength=spec.num_labels)[: spec.num_labels] > 0,
    }


def compute_fingerprint(
    rows: Sequence[dict],
    spec: VolumeSpec,
    seed: int = 1234,
    on_error: Callable[[DataError, int], None] | None = None,
) -> dict[str, Any]:
    """Spacing/shape statistics and per-channel foreground intensity statistics of training rows.

    A case that cannot be read goes to ``on_error(exc, row_index)`` (which raises, or records a skip)."""
    rng = np.random.default_rng(seed)
    cases = []
    for i, r in enumerate(rows):
        try:
            cases.append(_case(r["image"], r["mask"], spec, rng))
        except DataError as exc:
            if on_error is None:
                raise
            on_error(exc, i)
    if not cases:
        raise DataError("no readable labelled training volumes")
    spacings = np.array([c["spacing"] for c in cases])
    shapes = np.array([c["shape"] for c in cases])
    voxels = np.concatenate([c["voxels"] for c in cases], 1).astype(np.float64)
    intensity = {}
    for i, name in enumerate(spec.channel_names[: voxels.shape[0]]):
        v = voxels[i]
        intensity[name] = {
            "mean": float(v.mean()),
            "std": float(v.std()),
            "median": float(np.median(v)),
            "min": float(v.min()),
            "max": float(v.max()),
            "percentile_00_5": float(np.percentile(v, 0.5)),
            "percentile_99_5": float(np.percentile(v, 99.5)),
        }
    return {
        "cases": len(cases),
        "modality": spec.modality,
        "median_spacing": np.median(spacings, 0).tolist(),
        "median_shape": np.median(shapes, 0).tolist(),
        "spacings": spacings.tolist(),
        "shapes": shapes.astype(int).tolist(),
        "class_presence": np.mean([c["classes"] for c in cases], 0).round(4).tolist(),
        "intensity": intensity,
        "label_names": spec.label_names,
    }


def load_or_compute(
    rows: Sequence[dict],
    spec: VolumeSpec,
    cache: Path | None,
    on_error: Callable[[DataError, int], None] | None = None,
) -> tuple[dict, bool]:
    """The fingerprint of ``rows``, from ``cache`` when those exact files were fingerprinted before."""
    key = digest(
        {
            "files": [file_identity([*r["image"], r["mask"]]) for r in rows],
            "labels": {str(k): v for k, v in spec.label_map.items()},
            "version": FINGERPRINT_VERSION,
            "samples": SAMPLES_PER_CASE,
        }
    )
    path = cache / "fingerprints" / f"{key[:24]}.json" if cache is not None else None
    if path is not None and path.is_file():
        return json.loads(path.read_text(encoding="utf-8")), True
    fingerprint = compute_fingerprint(rows, spec, on_error=on_error)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(fingerprint, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    return fingerprint, False

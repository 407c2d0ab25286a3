"""Reading NIfTI volumes and label maps with nibabel, checked so bad files stop with one line.

``read_image`` stacks one file per channel (or takes a 4-D file's last axis as channels) and refuses
channels whose shape or affine differ; ``read_label`` rounds float-stored labels, refuses values
outside the dataset's label set and maps raw values to training labels (BraTS 2021's ET 4 -> 3).
Geometry helpers give the spacing and orientation codes of an affine.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import DataError

if TYPE_CHECKING:
    from .volume_spec import VolumeSpec

AFFINE_TOLERANCE = 1e-3  # mm: image and label affines must agree this closely
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    """True for ``.nii`` / ``.nii.gz`` names (any case)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _load(path: str) -> Any:
    """``nibabel`` image with its header read; one line naming the file when it is not a NIfTI."""
    import nibabel as nib

    try:
        return nib.load(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, gzip/zlib errors, ...
        raise DataError(f"{path}: not a readable NIfTI ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _data(image: Any, path: str, dtype: Any = np.float32) -> np.ndarray:
    """The voxel array; truncated or corrupt data is one line naming the file."""
    try:
        return np.asarray(image.dataobj, dtype=dtype)
    except (EOFError, OSError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: truncated or corrupt NIfTI data ({_reason(exc)})") from None


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) along the array axes: the lengths of the affine's columns."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(0))


def orientation_of(affine: np.ndarray) -> str:
    """Axis codes of an affine, e.g. ``RAS`` or ``LPS``."""
    import nibabel as nib

    return "".join(nib.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def header_info(paths: Sequence[str]) -> dict[str, Any]:
    """Shape, spacing and orientation from the first file's header (no voxel data is read)."""
    image = _load(str(paths[0]))
    affine = image.affine
    return {
        "shape": [int(s) for s in image.shape[:3]],
        "spacing": [float(s) for s in spacing_of(affine)],
        "orientation": orientation_of(affine),
    }


def read_image(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray, Any]:
    """(C, X, Y, Z) float32 voxels, the affine and the first file's header."""
    channels, affine, header, first = [], None, None, None
    for path in map(str, paths):
        image = _load(path)
        data = _data(image, path)
        if data.ndim == 3:
            data = data[None]
        elif data.ndim == 4:
            data = np.moveaxis(data, -1, 0)
        else:
            raise DataError(
                f"{path}: expected a 3-D volume (or 4-D with channels last), got shape {data.shape}"
            )
        if affine is None:
            affine, header, first = image.affine, image.header, path
        elif data.shape[1:] != channels[0].shape[1:]:
            raise DataError(f"{path}: shape {data.shape[1:]} differs from {first} {channels[0].shape[1:]}")
        elif not np.allclose(image.affine, affine, atol=AFFINE_TOLERANCE):
            raise DataError(f"{path}: affine differs from {first} (the channels are not co-registered)")
        channels.append(data)
    return np.concatenate(channels, 0), np.asarray(affine, dtype=np.float64), header


def read_label(
    path: str, spec: VolumeSpec, shape: Sequence[int] | None = None, affine: np.ndarray | None = None
) -> np.ndarray:
    """(X, Y, Z) uint8 training labels; checks the values and the geometry against the image's."""
    image = _load(str(path))
    raw = _data(image, path, np.float32)
    if raw.ndim == 4 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    if shape is not None and tuple(raw.shape) != tuple(shape):
        raise DataError(f"{path}: label shape {tuple(raw.shape)} but its image is {tuple(shape)}")
    if affine is not None and not np.allclose(image.affine, affine, atol=AFFINE_TOLERANCE):
        raise DataError(
            f"{path}: label affine differs from its image's (spacing {spacing_of(image.affine).round(3).tolist()} "
            f"vs {spacing_of(affine).round(3).tolist()}, origin {np.round(image.affine[:3, 3], 2).tolist()} "
            f"vs {np.round(affine[:3, 3], 2).tolist()})"
        )
    values = np.rint(raw).astype(np.int64)
    found = np.unique(values)
    allowed = spec.raw_values()
    bad = [int(v) for v in found if int(v) not in allowed]
    if bad:
        raise DataError(
            f"{path}: label values {bad[:6]} outside the label set {sorted(allowed)}"
            + (" (fractional values were rounded)" if not np.array_equal(values, raw) else "")
        )
    table = np.asarray(spec.lookup(), dtype=np.uint8)
    return table[values]

"""Pixels of any stored picture (encoded bytes, a file path, an array, a NIfTI volume) and their hashes:
sha256 of the decoded pixels finds exact copies, a 64-bit DCT perceptual hash (pHash) finds near copies
(resized, re-encoded, slightly brighter) by the Hamming distance between hashes."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Two images are near duplicates when their 64-bit pHashes differ in at most this many bits. Resized,
# JPEG re-encoded or brightened copies stay within 0-4 bits; unrelated pictures sit near 32.
NEAR_THRESHOLD = 5
HASH_SIDE, DCT_SIDE = 32, 8  # the picture is shrunk to 32 x 32 grey; the 8 x 8 lowest DCT terms give the bits
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".ico")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".npy")
_TO_RGB = {
    "1": "L",
    "PA": "RGBA",
    "RGBa": "RGBA",
    "La": "LA",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


@dataclass
class Pixels:
    """A decoded picture: its array, how it was stored (PIL mode, ``array``, ``NIfTI``) and whether it is
    a volume (3-D, maybe with channels last) rather than a 2-D image (H, W[, C])."""

    array: np.ndarray
    mode: str
    volume: bool


def is_picture_path(value: Any) -> bool:
    """Whether a string names a picture or volume file by its suffix."""
    return isinstance(value, str) and value.lower().endswith(PICTURE_SUFFIXES + VOLUME_SUFFIXES)


def read_pixels(value: Any) -> Pixels:
    """Decode a stored value; an unreadable one raises (the caller records it as a bad sample)."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return _from_pil(value)
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        data, path = value.get("bytes"), value.get("path")
        if data is None and not path:
            raise ValueError("no bytes and no path")
        if data is None:
            return read_pixels(str(path))
        if str(path or "").lower().endswith((".nii", ".nii.gz")) or data[:2] == b"\x1f\x8b":
            return Pixels(_nifti(data), "NIfTI", True)
        if str(path or "").lower().endswith(".npy"):
            return _from_array(np.load(io.BytesIO(data), allow_pickle=False))
        return _from_pil(Image.open(io.BytesIO(data)))
    if isinstance(value, str | os.PathLike):
        path = str(value)
        if path.lower().endswith((".nii", ".nii.gz")):
            return Pixels(_nifti(path), "NIfTI", True)
        if path.lower().endswith(".npy"):
            return _from_array(np.load(path, allow_pickle=False))
        with Image.open(path) as image:
            return _from_pil(image)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        parts = [read_pixels(v) for v in value]  # channel files of one sample, stacked channels last
        return Pixels(np.stack([p.array for p in parts], axis=-1), parts[0].mode, True)
    return _from_array(np.asarray(value))


def _from_array(array: np.ndarray) -> Pixels:
    if array.dtype == object or array.ndim < 2 or array.size == 0:
        raise ValueError(f"not a picture: an array of shape {array.shape} and dtype {array.dtype}")
    return Pixels(array, "array", array.ndim > 3 or (array.ndim == 3 and array.shape[-1] > 4))


def _from_pil(image: Any) -> Pixels:
    from PIL import ImageOps

    image.load()  # decode now: truncated files fail here
    mode = image.mode
    image = ImageOps.exif_transpose(image)
    target = (
        "RGBA"
        if mode == "P" and "transparency" in image.info
        else _TO_RGB.get(mode, "RGB" if mode == "P" else "")
    )
    if target:
        image = image.convert(target)
    return Pixels(np.asarray(image), mode, False)


def _nifti(source: str | bytes) -> np.ndarray:
    try:
        import nibabel
    except ImportError:
        raise ValueError("reading NIfTI needs nibabel: pip install 'neurotrain-hf[medical]'") from None
    if isinstance(source, bytes):
        data = gzip.decompress(source) if source[:2] == b"\x1f\x8b" else source
        return np.asanyarray(nibabel.Nifti1Image.from_bytes(data).dataobj)
    return np.asanyarray(nibabel.load(Path(source)).dataobj)


def channels_last(pixels: Pixels) -> np.ndarray:
    """The array with a trailing channel axis: (H, W, C) for images, (X, Y, Z, C) for volumes."""
    array = pixels.array.astype(np.uint8) if pixels.array.dtype == bool else pixels.array
    plain = array.ndim == 2 or (pixels.volume and array.ndim == 3)
    return array[..., None] if plain else array


def middle_plane(pixels: Pixels) -> np.ndarray:
    """A 2-D view (H, W, C) of a picture: volumes give their middle slice across the shortest axis."""
    array = channels_last(pixels)
    while array.ndim > 3:
        axis = int(np.argmin(array.shape[:-1]))
        array = np.take(array, array.shape[axis] // 2, axis=axis)
    return array


def content_hash(array: np.ndarray) -> str:
    """sha256 of the decoded pixels with their dtype and shape (equal only for identical pictures)."""
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def phash(plane: np.ndarray) -> int:
    """64-bit perceptual hash of an (H, W, C) plane: grey, 32 x 32, 2-D DCT, the 8 x 8 lowest frequencies
    compared with their median (one bit each). Global brightness and contrast changes leave it unchanged."""
    from PIL import Image
    from scipy.fft import dctn

    plane = plane.astype(np.float32)
    if plane.shape[-1] >= 3:
        grey = plane[..., 0] * 0.299 + plane[..., 1] * 0.587 + plane[..., 2] * 0.114
    else:
        grey = plane[..., 0]
    small = Image.fromarray(np.ascontiguousarray(grey)).resize(
        (HASH_SIDE, HASH_SIDE), Image.Resampling.BILINEAR
    )
    low = dctn(np.asarray(small, np.float64), type=2, norm="ortho")[:DCT_SIDE, :DCT_SIDE]
    bits = np.packbits((low > np.median(low)).ravel())
    return int.from_bytes(bits.tobytes(), "big")


def near_pairs(
    first: list[int], second: list[int], threshold: int = NEAR_THRESHOLD
) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every pair of hashes, one from each list, at most ``threshold`` bits apart."""
    a, b = np.asarray(first, np.uint64), np.asarray(second, np.uint64)
    out: list[tuple[int, int, int]] = []
    if not len(a) or not len(b):
        return out
    chunk = max(1, 1_000_000 // len(b))
    for start in range(0, len(a), chunk):
        xor = a[start : start + chunk, None] ^ b[None, :]
        distance = _POPCOUNT[xor.view(np.uint8)].reshape(*xor.shape, 8).sum(-1)
        for i, j in zip(*np.nonzero(distance <= threshold)):
            out.append((start + int(i), int(j), int(distance[i, j])))
    return out

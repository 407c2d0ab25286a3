"""Images as users have them: any PIL mode, EXIF orientation, 16-bit, arrays; decoded to CHW tensors.

``decode_image`` turns a PIL image, a ``datasets`` Image dict (``{"bytes", "path"}``), a file path or an
HWC array into a CHW tensor with the dataset's channel count (uint8, or float32 in [0, 1] for 16-bit
and float sources). ``scan_images`` reads every image of a split once (cached by ``datasets``) to find
modes, sizes and unreadable files, so the channel count is decided for the whole dataset and bad files
are named before training starts.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

# Modes whose pixels carry colour (a palette image is colour unless its palette is grey).
COLOUR_MODES = {"RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "PA", "RGBa"}
_HIGH_DEPTH = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}
_ORIENTATION = 0x0112
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")


def _from_numpy(arr: np.ndarray) -> torch.Tensor:
    """Share memory with writable arrays; copy read-only ones (Arrow-backed views)."""
    arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def image_name(value: Any) -> str:
    """The file an image came from, for error messages (``<in-memory image>`` otherwise)."""
    if isinstance(value, dict) and value.get("path"):
        return str(value["path"])
    if isinstance(value, (str, Path)):
        return str(value)
    filename = getattr(value, "filename", None)
    return str(filename) if filename else "<in-memory image>"


def open_image(value: Any) -> Image.Image:
    """A PIL image from a PIL image, a ``datasets`` Image dict or a path (lazy: the header only)."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return Image.open(io.BytesIO(value["bytes"]))
        value = value.get("path")
    if isinstance(value, (str, Path)):
        return Image.open(value)
    raise TypeError(f"cannot read an image from {type(value).__name__}")


def is_colour(image: Image.Image) -> bool:
    """True for colour modes, and for palette images whose palette is not grey."""
    if image.mode in COLOUR_MODES:
        return True
    if image.mode == "P":
        palette = np.asarray(image.getpalette() or [], dtype=np.int16).reshape(-1, 3)
        return bool(len(palette)) and not (palette == palette[:, :1]).all()
    return False


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, if any (cameras store portraits rotated)."""
    if image.getexif().get(_ORIENTATION, 1) != 1:
        return ImageOps.exif_transpose(image)
    return image


def _high_depth(image: Image.Image) -> np.ndarray:
    """16/32-bit integer and float images -> float32 (H, W) in [0, 1]."""
    arr = np.asarray(image).astype(np.float32)
    if image.mode in _HIGH_DEPTH:
        return arr / _HIGH_DEPTH[image.mode]
    if image.mode == "I":
        top = 65535.0 if arr.max(initial=0) <= 65535 else float(2**31 - 1)
        return np.clip(arr / top, 0.0, 1.0)
    return np.clip(arr, 0.0, 1.0)  # mode F: taken as [0, 1]


def pil_to_tensor(image: Image.Image, channels: int) -> torch.Tensor:
    """A PIL image in any mode -> CHW tensor with ``channels`` (1 or 3) channels."""
    image = upright(image)
    if image.mode in _HIGH_DEPTH or image.mode in ("I", "F"):
        grey = torch.from_numpy(_high_depth(image))[None]
        return grey.expand(channels, -1, -1).contiguous() if channels > 1 else grey
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    target = "L" if channels == 1 else "RGB"
    if image.mode != target:
        image = image.convert(target)
    arr = np.asarray(image)
    return _from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))


def array_to_tensor(arr: np.ndarray, channels: int) -> torch.Tensor:
    """An HW or HWC array (uint8 or float in [0, 1]) -> CHW tensor with ``channels`` channels."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype.kind in "iub" and arr.dtype != np.uint8:  # e.g. int64 from a numpy-formatted column
        arr = arr.astype(np.uint8) if arr.max(initial=0) <= 255 else (arr / 65535.0).astype(np.float32)
    tensor = _from_numpy(arr).permute(2, 0, 1)
    return match_channels(tensor, channels)


def match_channels(tensor: torch.Tensor, channels: int) -> torch.Tensor:
    """(C, H, W) or (B, C, H, W): drop alpha, grey -> RGB by repetition, RGB -> grey by luma."""
    c = tensor.shape[-3]
    if c == channels:
        return tensor
    if c in (2, 4):  # grey + alpha, RGB + alpha
        tensor, c = tensor[..., : c - 1, :, :], c - 1
    if c == channels:
        return tensor
    if c == 1:
        return tensor.expand(*tensor.shape[:-3], channels, *tensor.shape[-2:])
    weights = torch.tensor(_LUMA, dtype=torch.float32).view(3, 1, 1)
    grey = (tensor.float() * weights).sum(-3, keepdim=True)
    return grey.round_().clamp_(0, 255).to(torch.uint8) if tensor.dtype == torch.uint8 else grey


def upright_size(value: Any) -> tuple[int, ...]:
    """The size an image will have once decoded (EXIF orientation applied); reads headers only."""
    if isinstance(value, torch.Tensor) or (isinstance(value, np.ndarray) and value.dtype != object):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return np.shape(value)
    image = open_image(value)
    try:
        width, height = image.size
        if image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):
            width, height = height, width
        return (width, height)
    finally:
        if image is not value:
            image.close()


def upright_hw(value: Any) -> tuple[int, int]:
    """(height, width) an image will have once decoded: CHW tensors, HW(C) arrays, files and PIL images."""
    size = upright_size(value)
    if isinstance(value, torch.Tensor):
        return int(size[-2]), int(size[-1])
    if isinstance(value, (np.ndarray, list, tuple)):
        return int(size[0]), int(size[1])
    return int(size[1]), int(size[0])


def decode_image(value: Any, channels: int) -> torch.Tensor:
    """Any supported image value -> CHW tensor (uint8, or float32 in [0, 1]) with ``channels`` channels."""
    if isinstance(value, torch.Tensor):
        return match_channels(value if value.dim() == 3 else value[None], channels)
    if isinstance(value, (list, tuple)):  # a fixed-shape column formatted as nested lists
        value = np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype != object:
        return array_to_tensor(value, channels)
    image = open_image(value)
    try:
        return pil_to_tensor(image, channels)
    finally:
        if image is not value:
            image.close()


def to_float(tensor: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1]; float tensors unchanged."""
    return tensor.float().div_(255.0) if tensor.dtype == torch.uint8 else tensor.float()


def inspect_image(value: Any) -> dict[str, Any]:
    """Mode, upright size and colour of one image, decoding it fully; ``error`` says what failed."""
    try:
        image = open_image(value)
        try:
            width, height = image.size
            if image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):
                width, height = height, width
            mode, colour = image.mode, is_colour(image)
            if image.format == "JPEG":  # decode at 1/8 scale: every byte is still parsed, 10x faster
                image.draft(mode, (max(width // 8, 1), max(height // 8, 1)))
            image.load()
        finally:
            if image is not value:
                image.close()
        return {"mode": mode, "width": width, "height": height, "colour": colour, "error": None}
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file unusable
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"mode": None, "width": 0, "height": 0, "colour": False, "error": reason}


def _scan_batch(batch: dict[str, list], column: str) -> dict[str, list]:
    rows = [inspect_image(value) for value in batch[column]]
    out = {key: [row[key] for row in rows] for key in ("mode", "width", "height", "colour", "error")}
    out["file"] = [image_name(value) for value in batch[column]]
    return out


def scan_images(split, column: str = "image"):
    """One row per image of a ``datasets`` split: file, mode, width, height, colour, error.

    Runs once per split content: ``datasets`` caches the result by the split's fingerprint.
    """
    import datasets

    raw = split.cast_column(column, datasets.Image(decode=False)).select_columns([column])
    features = datasets.Features(
        {
            "mode": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "colour": datasets.Value("bool"),
            "error": datasets.Value("string"),
            "file": datasets.Value("string"),
        }
    )
    return raw.map(
        _scan_batch,
        batched=True,
        batch_size=256,
        fn_kwargs={"column": column},
        remove_columns=[column],
        features=features,
        desc="checking images",
    )


def drop_unreadable(split, name: str, skip: bool):
    """Scan a split's images: the first unreadable one stops with one line naming it (``DataError``), or,
    with ``skip``, every unreadable row is dropped. Returns (split, scan of the kept rows, skipped files)."""
    import logging

    import numpy as np

    from ..errors import DataError

    scan = scan_images(split)
    errors = [i for i, e in enumerate(scan["error"]) if e is not None]
    if errors and not skip:
        row = scan[errors[0]]
        raise DataError(
            f"{row['file']}: cannot read this image ({row['error']}; {name} row {errors[0]}); fix or remove "
            "it, or set [dataset] skip_bad_samples = true"
        )
    files = [scan[i]["file"] for i in errors]
    for i in errors:
        logging.getLogger(__name__).warning(
            "skipped unreadable image %s (%s)", scan[i]["file"], scan[i]["error"]
        )
    if errors:
        keep = np.setdiff1d(np.arange(len(split)), errors)
        split, scan = split.select(keep), scan.select(keep)
    return split, scan, files

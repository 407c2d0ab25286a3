"""What the demos share: finding the model, checking uploads, and the gradio pieces built on them.

Uploads are checked before any model sees them, each failure one line shown in the UI (``gr.Error``):
a missing or empty upload, a file over ``MAX_BYTES``, a format outside ``FORMATS``, a side over
``MAX_SIDE`` pixels (read from the header, before decoding), and a file that does not decode. Modes are
converted, not refused: 16-bit and float images are scaled to [0, 1], grey is repeated into RGB,
alpha dropped, palettes expanded, EXIF orientation applied (``neurotrain_hf.data.images``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NeuroTrainError

MODEL_ENV = "NEUROTRAIN_MODEL"
MAX_SIDE = 4096  # pixels, either side
MAX_BYTES = 20 * 1024 * 1024  # 20 MB per file
FORMATS = ("PNG", "JPEG", "MPO", "TIFF", "BMP", "WEBP", "GIF", "PPM")  # as PIL names them
FORMAT_NAMES = "PNG, JPEG, TIFF, BMP, WEBP, GIF or PPM"


class InputError(NeuroTrainError):
    """An upload the demo refuses; the message is shown to the user as is."""


def gradio() -> Any:
    """The gradio module (slow to import: only when a demo is built)."""
    import gradio as gr

    return gr


def resolve_model(model: str | os.PathLike | None = None) -> Path:
    """The local model folder of ``model`` (default ``$NEUROTRAIN_MODEL``): a run or model folder, or a
    Hub repo id downloaded with ``huggingface_hub``."""
    from ..predictor import model_folder

    model = model or os.environ.get(MODEL_ENV)
    if not model:
        raise NeuroTrainError(f"no model: pass a Hub repo id or a run/model folder, or set {MODEL_ENV}")
    path = Path(model).expanduser()
    if path.exists():
        folder = model_folder(path)
    elif _looks_like_repo_id(str(model)):
        from ..hub import pull

        folder = model_folder(pull(str(model)))  # one-line errors, no token in them
    else:
        raise NeuroTrainError(f"{model}: no such folder, and not a Hub repo id")
    return folder


def _looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.startswith((".", "~"))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _megabytes(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def open_checked(path: str | os.PathLike | None, what: str = "image") -> Any:
    """A decoded, upright PIL image from an uploaded file, or ``InputError`` saying what is wrong."""
    from PIL import Image

    from ..data.images import upright

    if path is None or str(path) == "":
        raise InputError(f"no {what}: upload an image file")
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise InputError(f"{name}: file not found")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{name}: the file is empty")
    if size > MAX_BYTES:
        raise InputError(f"{name}: {_megabytes(size)} is over the {_megabytes(MAX_BYTES)} limit")
    try:
        image = Image.open(path)
    except Image.DecompressionBombError:
        raise InputError(f"{name}: the image is over the {MAX_SIDE} px limit per side") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file unusable
        raise InputError(
            f"{name}: not a readable image (corrupt, or not {FORMAT_NAMES}: {first_line(exc)})"
        ) from None
    try:
        if image.format not in FORMATS:
            raise InputError(f"{name}: {image.format} images are not accepted; use {FORMAT_NAMES}")
        width, height = image.size
        if max(width, height) > MAX_SIDE:
            raise InputError(f"{name}: {width} x {height} px is over the {MAX_SIDE} px limit per side")
        if min(width, height) < 1:
            raise InputError(f"{name}: the image has no pixels")
        try:
            image.load()
            image = upright(image)
            image.load()
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{name}: the file is corrupt ({first_line(exc)})") from None
        return image
    except InputError:
        image.close()
        raise


def rgb_array(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 of any PIL image: 16-bit and float scaled from [0, 1], grey repeated, alpha dropped."""
    import torch

    from ..data.images import decode_image

    tensor = decode_image(image, 3)
    if tensor.dtype != torch.uint8:
        tensor = (tensor.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(tensor.permute(1, 2, 0).numpy())


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with every failure turned into ``gr.Error`` (a message in the UI, the worker stays up)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gr = gradio()
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except NeuroTrainError as exc:
            raise gr.Error(first_line(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the UI gets one line, not a traceback
            raise gr.Error(f"prediction failed: {first_line(exc)}") from None

    return wrapper


def image_input(label: str = "Image", **kwargs: Any) -> Any:
    """A ``gr.Image`` whose upload reaches the function as its file path, undecoded: the checks of
    ``open_checked`` then give the message, not gradio's own decoding. (Its ``preprocess`` is replaced
    on the instance: a subclass of a gradio component makes gradio write a ``.pyi`` beside this file.)"""
    gr = gradio()
    image = gr.Image(label=label, type="filepath", image_mode=None, sources=["upload", "clipboard"], **kwargs)
    decode = image.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is not None and getattr(payload, "path", None):
            return str(payload.path)
        return decode(payload)  # nothing uploaded, or a data: URL (paste)

    image.preprocess = preprocess
    return image


def examples_of(examples: Any, suffixes: tuple[str, ...] = (".png", ".jpg", ".jpeg")) -> list[str]:
    """Example files as strings (a folder: its files with ``suffixes``, sorted), or an empty list."""
    if not examples:
        return []
    if isinstance(examples, (str, os.PathLike)) and Path(examples).is_dir():
        return sorted(str(p) for p in Path(examples).iterdir() if p.name.lower().endswith(suffixes))
    return [str(p) for p in examples]

"""What the demos share: finding the model, checking uploads, and the gradio pieces built on them.

Uploads are checked before any model sees them, each failure one line shown in the UI (``gr.Error``):
a missing or empty upload, a file over ``MAX_BYTES``, a format outside ``FORMATS``, a side over
``MAX_SIDE`` pixels (read from the header, before decoding), and a file that does not decode. Modes are
converted, not refused: 16-bit and float images are scaled to [0, 1], grey is repeated into RGB,
alpha dropped, palettes expanded, EXIF orientation applied (``neurotrain_hf.data.images``).

Serving limits (``serve_limits``, applied to every demo) keep a burst of requests from exhausting memory:
``CONCURRENCY`` (1) prediction runs at a time per event (one model; torch already uses every core), at
most ``QUEUE_SIZE`` (16) requests wait in the queue (more are refused at once with gradio's "Queue is
full"), and the server stops reading an upload at ``UPLOAD_CAP`` (2) x the demo's own byte limit
(gradio's ``max_file_size``: a one-line HTTP 413; the browser and ``gradio_client`` refuse to send such a
file), so a huge file is cut off there; between the two the demo's own check refuses it by name.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NeuroTrainError

logger = logging.getLogger(__name__)
MODEL_ENV = "NEUROTRAIN_MODEL"
MAX_SIDE = 4096  # pixels, either side
MAX_BYTES = 20 * 1024 * 1024  # 20 MB per file
FORMATS = ("PNG", "JPEG", "MPO", "TIFF", "BMP", "WEBP", "GIF", "PPM")  # as PIL names them
FORMAT_NAMES = "PNG, JPEG, TIFF, BMP, WEBP, GIF or PPM"
CONCURRENCY = 1  # predictions running at once, per demo
QUEUE_SIZE = 16  # requests waiting; more are refused ("Queue is full")
UPLOAD_CAP = 2  # the server stops reading an upload at this multiple of the demo's byte limit
KEEP_REQUESTS = 8  # result folders a demo keeps on disk (gradio has copied older ones into its cache)


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
    return f"{math.ceil(n / 1024 / 1024 * 10) / 10:.1f} MB"  # rounded up: 20 MB and a byte is 20.1 MB


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
        reason = first_line(exc).replace(str(path), name)  # the upload's name, not the server's path
        raise InputError(f"{name}: not a readable image (corrupt, or not {FORMAT_NAMES}: {reason})") from None
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
            reason = first_line(exc).replace(str(path), name)
            raise InputError(f"{name}: the file is corrupt ({reason})") from None
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
    """``fn`` with every failure turned into a one-line ``gr.Error`` (a message in the UI, the worker
    stays up). A refused input is one warning line in the server's log, not gradio's traceback; an
    unexpected failure (a bug) logs its traceback there, the user still gets one line."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gr = gradio()
        try:
            return fn(*args, **kwargs)
        except gr.Error as exc:
            message = first_line(exc.message if isinstance(exc.message, str) else exc)
        except NeuroTrainError as exc:
            message = first_line(exc)
        except Exception as exc:  # noqa: BLE001 - the UI gets one line, not a traceback
            message = f"prediction failed: {first_line(exc)}"
            logger.error("%s refused a request: %s", fn.__name__, message, exc_info=True)
            raise gr.Error(message, print_exception=False) from None
        logger.warning("refused: %s", message)
        raise gr.Error(message, print_exception=False) from None

    return wrapper


def serve_limits(demo: Any, max_bytes: int = MAX_BYTES) -> Any:
    """``demo`` with its queue bounded (``CONCURRENCY``, ``QUEUE_SIZE``) and its ``launch`` defaulting to
    ``max_file_size = UPLOAD_CAP * max_bytes`` (a ``max_file_size`` given to ``launch`` wins)."""
    import functools

    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
    launch = demo.launch

    @functools.wraps(launch)
    def launch_with_cap(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("max_file_size", UPLOAD_CAP * max_bytes)
        return launch(*args, **kwargs)

    demo.launch = launch_with_cap
    demo.neurotrain_limits = {
        "concurrency": CONCURRENCY,
        "queue": QUEUE_SIZE,
        "upload": UPLOAD_CAP * max_bytes,
    }
    return demo


class ResultFiles:
    """Result files of a demo, one folder per request, only the last ``KEEP_REQUESTS`` kept.

    Pictures are returned to gradio as PNG files, not arrays: gradio copies a file into its cache under
    a temporary name and renames it (atomic), but writes an array's PNG in place at a path named by its
    content, so an identical result of a concurrent request truncates the file under a client that is
    downloading it (seen under load: a body of 0 bytes)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="neurotrain-demo-"))
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)
        self.kept: deque[Path] = deque()
        self.lock = threading.Lock()

    def folder(self) -> Path:
        """A new folder for one request's files (the oldest beyond ``KEEP_REQUESTS`` removed)."""
        with self.lock:
            self.kept.append(Path(tempfile.mkdtemp(dir=self.root)))
            while len(self.kept) > KEEP_REQUESTS:
                shutil.rmtree(self.kept.popleft(), ignore_errors=True)
            return self.kept[-1]

    @staticmethod
    def png(folder: Path, name: str, picture: Any) -> str:
        """``picture`` (uint8 array or PIL image) written losslessly as ``folder/name.png``."""
        from PIL import Image

        path = folder / f"{name}.png"
        (picture if isinstance(picture, Image.Image) else Image.fromarray(picture)).save(path, format="PNG")
        return str(path)


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


def file_input(label: str, file_types: list[str], file_count: str = "single", **kwargs: Any) -> Any:
    """A ``gr.File`` whose uploads reach the function as paths, unchecked: ``file_types`` only filters
    the browser's file picker, the demo's own checks give the message (gradio's check would refuse
    with a traceback in the server's log and leave an empty temporary file per request)."""
    gr = gradio()
    box = gr.File(label=label, file_types=file_types, file_count=file_count, type="filepath", **kwargs)

    def preprocess(payload: Any) -> str | list[str] | None:
        if payload is None:
            return None
        items = payload.root if isinstance(getattr(payload, "root", None), list) else [payload]
        paths = [str(item.path) for item in items]
        return paths if file_count == "multiple" else (paths[0] if paths else None)

    box.preprocess = preprocess
    return box


def examples_of(examples: Any, suffixes: tuple[str, ...] = (".png", ".jpg", ".jpeg")) -> list[str]:
    """Example files as strings (a folder: its files with ``suffixes``, sorted), or an empty list."""
    if not examples:
        return []
    if isinstance(examples, (str, os.PathLike)) and Path(examples).is_dir():
        return sorted(str(p) for p in Path(examples).iterdir() if p.name.lower().endswith(suffixes))
    return [str(p) for p in examples]

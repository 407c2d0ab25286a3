"""Crash-safe checkpoints: a checkpoint counts only once its completion marker is written, last, by rank 0.

A process killed while saving leaves a folder without the marker; ``last_good_checkpoint`` skips it,
so resuming (and the Tester's ``checkpoint = "last"``) always loads a complete one. Older checkpoints
are rotated away only after the new one is marked, and a deleted checkpoint is first renamed out of
the ``checkpoint-N`` namespace, so the run folder never lacks a complete checkpoint. Final model
folders are written to a staging folder and renamed into place. A write that fails (full disk, quota)
is recognised by ``is_write_error`` so the trainer can stop with one line instead of a traceback.
``load_model_weights`` reads a checkpoint's weights back the way ``from_pretrained`` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import TrainingHaltedError

COMPLETE_MARKER = "neurotrain_complete.json"
EVAL_ARTIFACTS = "neurotrain_eval.json"  # what the evaluation before this save kept (e.g. a confusion matrix)
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: str | Path, data: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def mark_complete(checkpoint: str | Path, step: int, **facts: Any) -> None:
    """Flush the checkpoint's files to disk, then write the marker (with ``facts``: the batch layout)."""
    checkpoint = Path(checkpoint)
    for file in checkpoint.rglob("*"):
        if file.is_file():
            with open(file, "rb+") as f:
                os.fsync(f.fileno())
    write_json_atomic(checkpoint / COMPLETE_MARKER, {"step": step, "time": time.time(), **facts})


def marker(checkpoint: str | Path) -> dict[str, Any]:
    """What ``mark_complete`` recorded ({} for a checkpoint without a readable marker)."""
    try:
        return json.loads((Path(checkpoint) / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def is_complete(checkpoint: str | Path) -> bool:
    return (Path(checkpoint) / COMPLETE_MARKER).is_file()


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """All ``checkpoint-N`` folders, sorted by step."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))
    ]
    return sorted(found)


def last_good_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    good = [p for _, p in checkpoints(run_dir) if is_complete(p)]
    return good[-1] if good else None


def _delete(path: Path) -> None:
    """Rename out of the ``checkpoint-N`` namespace first (atomic), then delete."""
    trash = path.with_name(f".deleting-{path.name}")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    _fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


def _same(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def remove_incomplete(run_dir: str | Path, keep: list[str | Path] | tuple = ()) -> list[Path]:
    """Delete checkpoint folders a crash left half-written (never one in ``keep``); returns them."""
    removed = []
    for _, path in checkpoints(run_dir):
        if not is_complete(path) and not any(_same(path, k) for k in keep):
            _delete(path)
            removed.append(path)
    return removed


def rotate_checkpoints(
    run_dir: str | Path, limit: int | None, keep: list[str | Path] | tuple = ()
) -> list[Path]:
    """Keep the newest ``limit`` complete checkpoints plus those in ``keep`` (best, named); delete the rest.

    Incomplete folders are left to ``remove_incomplete`` (resume), never counted as the newest.
    """
    if not limit or limit <= 0:
        return []
    complete = [p for _, p in checkpoints(run_dir) if is_complete(p)]
    newest = complete[-limit:]
    removed = []
    for path in complete:
        if path in newest or any(_same(path, k) for k in keep):
            continue
        _delete(path)
        removed.append(path)
    return removed


def is_write_error(exc: BaseException) -> bool:
    """A failed write: an ``OSError``, or what safetensors and ``torch.save`` raise for one.

    A full disk reaches Python as ``OSError`` from Python-level writes, as safetensors'
    ``SafetensorError("... I/O error: ...")`` and as torch's ``RuntimeError`` from its zip writer.
    """
    if isinstance(exc, OSError):
        return True
    text = str(exc)
    if type(exc).__name__ == "SafetensorError":
        return "I/O error" in text
    return isinstance(exc, RuntimeError) and ("PytorchStreamWriter" in text or "inline_container" in text)


def write_error_text(exc: BaseException) -> str:
    """One line for a failed write: the file (when known) and the system's reason."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def discard(path: str | Path) -> None:
    """Best-effort removal of a half-written folder (it frees the space a full disk needs)."""
    path = Path(path)
    if path.exists():
        try:
            _delete(path)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)


def load_model_weights(model: Any, folder: str | Path) -> None:
    """Load a checkpoint's model weights into ``model`` in place, every tensor or a one-line error.

    ``Trainer`` reloads checkpoints (resume, best model at the end) with ``load_state_dict(strict=False)``
    on the raw file, but transformers 5 ``save_pretrained`` writes the original key names of models
    with a conversion mapping (DETR: 92 of its 141 tensors), so those weights were silently left as
    they were (transformers#43701). ``from_pretrained`` applies the mapping; its tensors are copied in.
    """
    loaded, info = type(model).from_pretrained(str(folder), output_loading_info=True)
    problems = [
        f"{kind.replace('_', ' ')}: {sorted(map(str, keys))[:3]}" for kind, keys in info.items() if keys
    ]
    if problems:
        raise TrainingHaltedError(
            f"{folder}: the checkpoint does not match the model ({'; '.join(problems)})"
        )
    model.load_state_dict(loaded.state_dict(), strict=True)


def replace_dir_atomic(staging: str | Path, final: str | Path) -> None:
    """Move a fully written ``staging`` folder to ``final``, replacing an older one."""
    staging, final = Path(staging), Path(final)
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staging, final)
    _fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)

"""Run folders on nodes that may not share a filesystem (clusters with a local disk per node).

The functions take Accelerate's ``Accelerator`` or ``PartialState`` (``num_processes``, ``is_main_process``,
``wait_for_everyone``, ``device``) and are collective: every rank calls them.

Whether a rank sees the main process's folder is found by a marker file, once per run and per test. Where
it does not, checkpoints follow ``save_on_each_node`` (each node keeps its own, so each can resume) and
test outputs travel to the main process through the process group instead of through the disk.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path

import torch

from ..errors import TrainingHaltedError
from .checkpointing import is_complete

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 << 20  # files sent per collective round, so a large test split is not held at once


def sees_main_folder(accelerator, folder: str | Path, wait_s: float = 2.0) -> bool:
    """Whether this rank sees the main process's ``folder`` (the same filesystem). Every rank calls it.

    A network filesystem may show a new file late: a rank looks for up to ``wait_s`` seconds."""
    if accelerator.num_processes == 1:
        return True
    folder = Path(folder)
    token = [uuid.uuid4().hex if accelerator.is_main_process else None]
    torch.distributed.broadcast_object_list(token, src=0)
    marker = folder / f".neurotrain-node-{token[0]}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(token[0], encoding="utf-8")
    accelerator.wait_for_everyone()
    seen, deadline = False, time.monotonic() + wait_s
    while not seen:
        try:
            os.listdir(folder)  # refreshes a network filesystem's cached listing
            seen = marker.read_text(encoding="utf-8") == token[0]
        except OSError:
            seen = False
        if seen or time.monotonic() > deadline or accelerator.is_main_process:
            break
        time.sleep(0.1)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker.unlink(missing_ok=True)
    return seen


def any_rank(accelerator, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([float(flag)], device=accelerator.device)
    torch.distributed.all_reduce(value)
    return bool(value.item() > 0)


def send_to_main(accelerator, staging: Path | None, folder: Path, chunk_bytes: int = CHUNK_BYTES) -> int:
    """The files under each rank's ``staging`` folder (None: nothing to send) written under the main
    process's ``folder`` at the same relative paths, in rounds of about ``chunk_bytes`` per rank; staging
    removed. Every rank calls it; returns how many files the main process received."""
    files = sorted(p for p in staging.rglob("*") if p.is_file()) if staging is not None else []
    received = 0
    while True:
        batch, size = [], 0
        while files and (not batch or size < chunk_bytes):
            path = files.pop(0)
            data = path.read_bytes()
            batch.append((path.relative_to(staging).as_posix(), data))
            size += len(data)
        gathered = [None] * accelerator.num_processes if accelerator.is_main_process else None
        torch.distributed.gather_object(batch, gathered, dst=0)
        if accelerator.is_main_process:
            for sent in gathered:
                for relative, data in sent:
                    target = folder / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(f".{target.name}.tmp")
                    tmp.write_bytes(data)
                    os.replace(tmp, target)
                    received += 1
        if not any_rank(accelerator, bool(files)):
            break
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    return received


def agree_on_checkpoint(accelerator, path: str | Path | None) -> Path | None:
    """The main process's checkpoint to resume from, which every rank must hold complete.

    Nodes without a shared filesystem keep their own checkpoints; a rank lacking the main process's
    choice stops every rank with one line instead of resuming from different steps (or hanging)."""
    if accelerator.num_processes == 1:
        return Path(path) if path else None
    chosen = [str(path) if path else None]
    torch.distributed.broadcast_object_list(chosen, src=0)
    held: list = [None] * accelerator.num_processes
    torch.distributed.all_gather_object(held, chosen[0] is None or is_complete(chosen[0]))
    missing = [rank for rank, ok in enumerate(held) if not ok]
    if missing and len(missing) < len(held):  # none holds it: the caller's own check names the problem
        raise TrainingHaltedError(
            f"resume: checkpoint {chosen[0]} (the main process's newest complete one) is missing or "
            f"incomplete on the node of rank {', '.join(map(str, missing))}; without a shared filesystem "
            "each node keeps its own checkpoints: copy that folder there or resume from one every node holds"
        )
    return Path(chosen[0]) if chosen[0] else None

"""Test helper: run an experiment from a config, optionally SIGKILL itself or fail a write while saving.

python tests/helpers/train_until.py CONFIG [--first CONFIG0] [--kill-at-step N | --kill-in-save N:POINT |
    --fail-in-save N:FILE] [overrides...]

``--first CONFIG0``: train CONFIG0 (same overrides) to its end first, in this process, with nothing
injected: the uninterrupted reference of a kill test costs no extra interpreter start.

POINT: ``optimizer`` (model weights written, optimizer state not yet), ``rotate`` (new checkpoint
marked complete, older ones not yet rotated away), ``delete`` (an old checkpoint renamed for deletion,
not yet deleted).

``--fail-in-save N:FILE``: writing FILE (``model.safetensors``, ``optimizer.pt``, ...) into checkpoint N
fails like a full disk: a few bytes land in the file, then ``OSError(ENOSPC)``. CONFIG then runs the way
``neurotrain train`` runs it (one line on stderr and exit code 2 for a NeuroTrainError).
"""

import errno
import os
import signal
import sys
from pathlib import Path

import neurotrain_hf  # noqa: F401 - before transformers, as our entry points: it quiets torchao's import warnings

# isort: split
from transformers import Trainer, TrainerCallback

from neurotrain_hf.config import load_config
from neurotrain_hf.runner import run


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            die()


def kill_in_save(step: int, point: str) -> None:
    """Patch the save path so the process dies at ``point`` while saving checkpoint ``step``."""
    import neurotrain_hf.trainer.checkpointing as checkpointing
    import neurotrain_hf.trainer.neuro_trainer as neuro_trainer

    current = {"step": -1}
    original_save = Trainer._save_optimizer_and_scheduler

    def save_optimizer(self, output_dir):
        current["step"] = self.state.global_step
        if point == "optimizer" and self.state.global_step == step:
            die()
        return original_save(self, output_dir)

    original_rotate = neuro_trainer.rotate_checkpoints

    def rotate(*args, **kwargs):
        if point == "rotate" and current["step"] == step:
            die()
        return original_rotate(*args, **kwargs)

    original_rmtree = checkpointing.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if (
            point == "delete"
            and current["step"] == step
            and os.path.basename(str(path)).startswith(".deleting-")
        ) and os.path.exists(path):
            die()
        return original_rmtree(path, *args, **kwargs)

    Trainer._save_optimizer_and_scheduler = save_optimizer
    neuro_trainer.rotate_checkpoints = rotate
    checkpointing.shutil.rmtree = rmtree


def fail_in_save(step: int, name: str) -> None:
    """Make the file ``name`` of checkpoint ``step`` fail half-written with ``OSError(ENOSPC)``.

    Patches the two writers a checkpoint's tensors go through: ``torch.save`` (optimizer, scheduler, RNG
    states, DeepSpeed shards) and safetensors' ``save_file`` (model weights, via transformers)."""
    import safetensors.torch
    import torch
    import transformers.modeling_utils

    folder = f"checkpoint-{step}"

    def check(target) -> None:
        if not isinstance(target, (str, os.PathLike)):
            return
        path = Path(target)
        if path.name == name and folder in path.parts:
            path.write_bytes(b"\0" * 64)  # what landed before the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    original_torch_save = torch.save

    def torch_save(obj, f, *args, **kwargs):
        check(f)
        return original_torch_save(obj, f, *args, **kwargs)

    original_save_file = safetensors.torch.save_file

    def save_file(tensors, filename, *args, **kwargs):
        check(filename)
        return original_save_file(tensors, filename, *args, **kwargs)

    torch.save = torch_save
    safetensors.torch.save_file = save_file
    transformers.modeling_utils.safe_save_file = save_file


def main(argv: list[str]) -> int:
    path, rest = argv[0], argv[1:]
    options = {}
    while rest[:1] and rest[0] in ("--first", "--kill-at-step", "--kill-in-save", "--fail-in-save"):
        options[rest[0]], rest = rest[1], rest[2:]
    if "--fail-in-save" in options:  # as `neurotrain train` sets it up (no progress bars on a pipe)
        from neurotrain_hf.cli import setup_logging

        setup_logging()
    if "--first" in options:  # before anything is patched
        run(load_config(options["--first"], rest))
    callbacks = []
    if "--kill-at-step" in options:
        callbacks.append(KillAt(int(options["--kill-at-step"])))
    if "--kill-in-save" in options:
        step, point = options["--kill-in-save"].split(":")
        kill_in_save(int(step), point)
    if "--fail-in-save" in options:
        from neurotrain_hf.cli import recipe_main

        step, name = options["--fail-in-save"].split(":")
        fail_in_save(int(step), name)
        return recipe_main(None, [path, *rest])
    run(load_config(path, rest), callbacks=callbacks)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

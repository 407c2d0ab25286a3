"""Test helper: run an experiment from a config, optionally SIGKILL itself at a step or inside a save.

python tests/helpers/train_until.py CONFIG [--kill-at-step N | --kill-in-save N:POINT] [overrides...]

POINT: ``optimizer`` (model weights written, optimizer state not yet), ``rotate`` (new checkpoint
marked complete, older ones not yet rotated away), ``delete`` (an old checkpoint renamed for deletion,
not yet deleted).
"""

import os
import signal
import sys

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


def main(argv: list[str]) -> int:
    path, rest = argv[0], argv[1:]
    callbacks = []
    if rest[:1] == ["--kill-at-step"]:
        callbacks.append(KillAt(int(rest[1])))
        rest = rest[2:]
    elif rest[:1] == ["--kill-in-save"]:
        step, point = rest[1].split(":")
        kill_in_save(int(step), point)
        rest = rest[2:]
    run(load_config(path, rest), callbacks=callbacks)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

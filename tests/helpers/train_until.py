"""Test helper: run the classification task from a config, optionally SIGKILL itself at a step.

python tests/helpers/train_until.py CONFIG [--kill-at-step N] [overrides...]
"""

import os
import signal
import sys

from transformers import TrainerCallback

from neurotrain_hf.config import load_config
from neurotrain_hf.runner import run


class KillAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    path, rest = argv[0], argv[1:]
    callbacks = []
    if rest[:1] == ["--kill-at-step"]:
        callbacks.append(KillAt(int(rest[1])))
        rest = rest[2:]
    run(load_config(path, rest), callbacks=callbacks)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

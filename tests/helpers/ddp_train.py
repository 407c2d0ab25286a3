"""Test helper for multi-process runs: train or evaluate, then every rank writes its view as JSON.

python tests/helpers/ddp_train.py [--first CONFIG0] [--nan-on-rank R STEP | --kill-at-step N | --eval-only]
    CONFIG [overrides...]

``--first CONFIG0``: train CONFIG0 (same overrides) to its end first in the same processes, with nothing
injected: the uninterrupted reference of a kill test costs no extra launch.
"""

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from neurotrain_hf.config import load_config
from neurotrain_hf.runner import build, run, shutdown_distributed


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RankReport(TrainerCallback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        first = next(iter(train_dataloader))["labels"].tolist() if train_dataloader is not None else None
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{rank()}.json").write_text(
            json.dumps(
                {
                    "world_size": args.world_size,
                    "global_step": state.global_step,
                    "weights": digest(model),
                    "first_batch_labels": first,
                }
            )
        )


class PoisonOnRank(TrainerCallback):
    """Makes one rank's logits NaN from a given step on (tests the collective NaN stop)."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if args.process_index == self.rank:
            model.head.register_forward_hook(
                lambda m, i, out: out * float("nan") if state.global_step + 1 >= self.step else out
            )


class KillAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def fresh_accelerator() -> None:
    """Let a second run build its Accelerator: Accelerate refuses a second DeepSpeed one in a process.

    The process group (``PartialState``) is kept."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def evaluate_only(config) -> None:
    """Evaluate the seeded initial model on the valid split; each rank writes metrics and confusion."""
    _, _, trainer = build(config)
    metrics = trainer.evaluate()
    out = config.run_dir / "ranks"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"eval_rank{rank()}.json").write_text(
        json.dumps(
            {"world_size": trainer.args.world_size, "metrics": metrics, "artifacts": trainer.last_eval}
        )
    )


def main(argv: list[str]) -> int:
    first = None
    if argv[:1] == ["--first"]:
        first, argv = argv[1], argv[2:]
    callbacks = []
    if argv[:1] == ["--nan-on-rank"]:
        callbacks.append(PoisonOnRank(int(argv[1]), int(argv[2])))
        argv = argv[3:]
    elif argv[:1] == ["--kill-at-step"]:
        callbacks.append(KillAt(int(argv[1])))
        argv = argv[2:]
    elif argv[:1] == ["--eval-only"]:
        evaluate_only(load_config(argv[1], argv[2:]))
        shutdown_distributed()
        return 0
    if first is not None:
        reference = load_config(first, argv[1:])
        run(reference, callbacks=[RankReport(reference.run_dir / "ranks")])
        fresh_accelerator()
    config = load_config(argv[0], argv[1:])
    run(config, callbacks=[RankReport(config.run_dir / "ranks"), *callbacks])
    shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

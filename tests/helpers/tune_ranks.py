"""Test helper, run under ``accelerate launch``: ``neurotrain tune``'s loop with a callback writing, per rank,
the trial each training starts and the values it trains with (``OUT/rank<R>.jsonl``)."""

import json
import sys
from pathlib import Path

import neurotrain_hf  # noqa: F401 - before transformers, as our entry points

# isort: split
from transformers import TrainerCallback

from neurotrain_hf.runner import shutdown_distributed
from neurotrain_hf.tune.search import resolve_study, work


class TrainedWith(TrainerCallback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        convolution = next(m for m in model.modules() if m.__class__.__name__ == "Conv2d")
        row = {
            "trial": state.trial_name,
            "learning_rate": args.learning_rate,
            "first_channels": convolution.out_channels,
            "first_weight_sum": float(convolution.weight.sum()),
        }
        with open(self.out / f"rank{args.process_index}.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    config, out = sys.argv[1], Path(sys.argv[2])
    try:
        work(resolve_study(config, [], None, None, None), callbacks=[TrainedWith(out)])
    finally:
        shutdown_distributed()

"""Test helper for 2-process runs: train, then every rank writes its view (world size, steps, weights hash)."""

import hashlib
import json
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from neurotrain_hf.config import load_config
from neurotrain_hf.runner import run


class RankReport(TrainerCallback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.first_labels = None

    def on_step_begin(self, args, state, control, **kwargs):
        pass

    def on_train_end(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        first = next(iter(train_dataloader))["labels"].tolist() if train_dataloader is not None else None
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{rank}.json").write_text(
            json.dumps(
                {
                    "world_size": args.world_size,
                    "global_step": state.global_step,
                    "weights": digest.hexdigest(),
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


def main(argv: list[str]) -> int:
    callbacks = []
    if argv[:1] == ["--nan-on-rank"]:
        callbacks.append(PoisonOnRank(int(argv[1]), int(argv[2])))
        argv = argv[3:]
    config = load_config(argv[0], argv[1:])
    run(config, callbacks=[RankReport(config.run_dir / "ranks"), *callbacks])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

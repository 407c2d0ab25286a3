"""Trainer overhead on the digits recipe: hand-written loop vs plain Trainer vs NeuroTrainer.

Same model (the recipe's default), batch size, optimizer (AdamW), schedule, gradient clipping and steps:
  (a) a hand-written PyTorch loop over in-memory tensors (TensorDataset): the limit;
  (b) plain transformers.Trainer fed by a datasets.Dataset (Array3D columns, torch format), the model's
      logits through the Trainer's own label smoother (``label_smoothing_factor``);
  (c) ClassificationTrainer (NeuroTrainer) with its datasets-backed batch loader, evaluation off.
Runs alternate (a, b, c, a, b, c, ...); steps/s is timed after a warm-up, medians are reported.

    .venv/bin/python benchmarks/trainer_overhead.py [--steps 300] [--rounds 5]
    .venv/bin/python benchmarks/trainer_overhead.py --steps 30 --rounds 1   # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments, get_scheduler, set_seed  # noqa: E402

from neurotrain_hf.config import load_config  # noqa: E402
from neurotrain_hf.data import prepare_data  # noqa: E402
from neurotrain_hf.models import get_model  # noqa: E402
from neurotrain_hf.tasks.classification.trainer import ClassificationTrainer  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "digits_cnn.toml"
WARMUP = 20


class StepTimer(TrainerCallback):
    """Times optimizer steps WARMUP+1 .. last."""

    def __init__(self) -> None:
        self.t0 = self.t1 = None
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == WARMUP:
            self.t0 = time.perf_counter()
        elif state.global_step > WARMUP:
            self.t1, self.steps = time.perf_counter(), state.global_step - WARMUP


def tensors(config):
    """The recipe's normalized train split as (pixel_values, labels) tensors, plus its info and splits."""
    data = prepare_data(config)
    dsd, info = data.splits, data.info
    batch = dsd["train"][: len(dsd["train"])]
    return batch["pixel_values"], batch["labels"], info, dsd


def new_model(config, info):
    set_seed(config.basic.seed)
    return get_model(config.model.name, config.model, num_labels=info.num_labels, in_channels=info.channels)


def run_loop(config, x, y, info, steps: int) -> float:
    args = config.training
    model = new_model(config, info).train()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=args.batch_size, shuffle=True, drop_last=False
    )
    # As Trainer: fused AdamW, no weight decay on biases and norm weights (the 1-D parameters).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=args.learning_rate, fused=True)
    sched = get_scheduler(
        args.lr_scheduler_type, opt, num_warmup_steps=args.warmup_steps, num_training_steps=steps
    )
    step, t0 = 0, None
    while step < steps:
        for xb, yb in loader:
            logits = model(pixel_values=xb).logits
            loss = F.cross_entropy(logits, yb, label_smoothing=args.label_smoothing)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step == WARMUP:
                t0 = time.perf_counter()
            if step >= steps:
                break
    return (steps - WARMUP) / (time.perf_counter() - t0)


def common_args(config, steps: int, out: str) -> dict:
    a = config.training
    return dict(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=a.batch_size,
        learning_rate=a.learning_rate,
        weight_decay=a.weight_decay,
        lr_scheduler_type=a.lr_scheduler_type,
        warmup_steps=a.warmup_steps,
        max_grad_norm=a.max_grad_norm,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=10,
        report_to="none",
        disable_tqdm=True,
        seed=config.basic.seed,
        dataloader_pin_memory=False,
    )


def run_plain_trainer(config, x, y, info, steps: int) -> float:
    features = datasets.Features(
        {"pixel_values": datasets.Array3D(tuple(x.shape[1:]), "float32"), "labels": datasets.Value("int64")}
    )
    ds = datasets.Dataset.from_dict({"pixel_values": x.numpy(), "labels": y.numpy()}, features=features)
    ds = ds.with_format("torch")
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        # The plain-Trainer way to smooth labels: its LabelSmoother on the model's logits.
        args = TrainingArguments(
            **common_args(config, steps, out), label_smoothing_factor=config.training.label_smoothing
        )
        Trainer(model=new_model(config, info), args=args, train_dataset=ds, callbacks=[timer]).train()
    return timer.steps / (timer.t1 - timer.t0)


def run_neurotrainer(config, info, dsd, steps: int) -> float:
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = type(config.training)(
            **common_args(config, steps, out),
            loss="ce",
            label_smoothing=config.training.label_smoothing,
            metrics=[],
            plots=False,
            monitor_resources=False,
        )
        trainer = ClassificationTrainer(
            new_model(config, info),
            args,
            train_dataset=dsd["train"],
            num_labels=info.num_labels,
            callbacks=[timer],
        )
        trainer.train()
    return timer.steps / (timer.t1 - timer.t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=300, help=f"optimizer steps per run (> {WARMUP} warm-up)"
    )
    parser.add_argument(
        "--rounds", "--repeats", dest="repeats", type=int, default=5, help="alternating rounds"
    )
    opts = parser.parse_args(argv)
    if opts.steps <= WARMUP:
        parser.error(f"--steps must exceed the {WARMUP} warm-up steps")
    config = load_config(RECIPE)
    x, y, info, dsd = tensors(config)
    results: dict[str, list[float]] = {"a_loop": [], "b_trainer": [], "c_neurotrainer": []}
    for r in range(opts.repeats):
        results["a_loop"].append(run_loop(config, x, y, info, opts.steps))
        results["b_trainer"].append(run_plain_trainer(config, x, y, info, opts.steps))
        results["c_neurotrainer"].append(run_neurotrainer(config, info, dsd, opts.steps))
        print(
            f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} steps/s" for k, v in results.items()), flush=True
        )
    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"\nmodel {config.model.name} {dict(config.model.kwargs)}, batch {config.training.batch_size}, "
        f"{opts.steps} steps ({WARMUP} warm-up), torch threads {torch.get_num_threads()}"
    )
    for k, v in med.items():
        print(f"{k:16s} median {v:8.1f} steps/s   runs: {', '.join(f'{s:.1f}' for s in results[k])}")
    # per-round ratios pair runs made back to back, which cancels slow drifts of the machine
    paired_b = statistics.median(b / a for a, b in zip(results["a_loop"], results["b_trainer"]))
    paired_c = statistics.median(c / a for a, c in zip(results["a_loop"], results["c_neurotrainer"]))
    print(
        f"ratio b/a = {med['b_trainer'] / med['a_loop']:.3f} (of medians), {paired_b:.3f} (median of per-round)"
    )
    print(
        f"ratio c/a = {med['c_neurotrainer'] / med['a_loop']:.3f} (of medians), {paired_c:.3f} (median of per-round)"
        "   (target >= 0.95)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

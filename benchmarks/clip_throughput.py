"""CLIP training throughput (image-text pairs/s): hand-written loop vs plain Trainer vs ClipTrainer.

The default experiment (``recipes/configs/clip_synthetic.toml``: ``clip_tiny``, random init, batch 128, fused
AdamW lr 2e-3 wd 0.1, cosine schedule with 10% warm-up, clipping at 1.0). Data is prepared once by
``prepare(config)``; all three decode and tokenize on the fly through the train split's ``ClipTransform``
(one call per batch of indices) and build their model with the same seed:
  (a) hand-written loop: DataLoader over index batches, ``model(**batch)``, neurotrain's ``clip_loss``,
      clipping, fused AdamW (the Trainer's weight-decay groups), scheduler, logit-scale clamp;
  (b) plain ``transformers.Trainer`` on the same batches with CLIPModel's stock loss (the collator adds
      ``return_loss=True``, as transformers' ``run_clip.py``), ``remove_unused_columns=False``;
  (c) ClipTrainer (NeuroTrainer), built by the task from the config, on the split itself.
Evaluation and saving off, ``report_to="none"``, no progress bars; (b) and (c) log every ``logging_steps``
of the recipe (console printer off). Pairs/s over ``--steps`` optimizer steps after ``--warmup`` untimed
ones; rounds alternate (a, b, c, ...); medians and ratios are printed (target: c >= 0.95x a). "data alone":
what (a)'s and (c)'s loaders yield without training.

    .venv/bin/python benchmarks/clip_throughput.py [--steps N] [--batch-size B] [--repeats R]
    .venv/bin/python benchmarks/clip_throughput.py --steps 5 --repeats 1    # smoke run
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NEUROTRAIN_LOG_LEVEL", "WARNING")

import datasets  # noqa: E402
import torch  # noqa: E402
from timing import StepTimer, device, sync  # noqa: E402
from transformers import PrinterCallback, Trainer, TrainingArguments, get_scheduler, set_seed  # noqa: E402

from neurotrain_hf.config import build_config, read_config_file  # noqa: E402
from neurotrain_hf.runner import build  # noqa: E402
from neurotrain_hf.tasks.clip.loss import MAX_LOGIT_SCALE, clip_loss  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "clip_synthetic.toml"
TARGET = 0.95
# [training] fields the plain Trainer takes from the experiment as they are
PLAIN_KEYS = ("per_device_train_batch_size", "max_steps", "learning_rate", "weight_decay", "optim", "seed")
PLAIN_KEYS += ("adam_beta1", "adam_beta2", "adam_epsilon", "lr_scheduler_type", "warmup_steps")
PLAIN_KEYS += ("max_grad_norm", "logging_steps", "dataloader_num_workers", "dataloader_pin_memory")
OFF = {"eval_strategy": "no", "save_strategy": "no", "report_to": "none", "disable_tqdm": True}  # (b) and (c)


class IndexBatches(torch.utils.data.Dataset):
    """The train split's own ``ClipTransform`` on each batch of indices (DataLoader calls ``__getitems__``)."""

    def __init__(self, split: datasets.Dataset) -> None:
        self.transform = split.format["format_kwargs"]["transform"]
        self.view = split.with_format("numpy", columns=["image", "captions"])

    def __len__(self) -> int:
        return len(self.view)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.transform(self.view[list(indices)])


def passthrough(batch):
    return batch


def stock_loss(batch):
    return {**batch, "return_loss": True}  # run_clip.py's collator: CLIPModel computes its own loss


def experiment(out: str, opts):
    raw = read_config_file(RECIPE)
    raw["basic"].update({"run_id": "clip_throughput", "output_dir": out})
    raw["training"].update(OFF, batch_size=opts.batch_size, max_steps=opts.warmup + opts.steps, plots=False)
    return build_config(raw, source="clip_throughput")


def new_model(task, config, data):
    set_seed(config.basic.seed)
    return task.build_model(config, data)


def shared_loader(data, opts, seed: int) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    batches = IndexBatches(data.splits["train"])
    return torch.utils.data.DataLoader(
        batches, batch_size=opts.batch_size, shuffle=True, generator=generator, collate_fn=passthrough
    )


def run_loop(task, data, config, opts) -> float:
    dev, args, total = device(), config.training, opts.warmup + opts.steps
    model = new_model(task, config, data).to(dev).train()
    decay = set(Trainer.get_decay_parameter_names(None, model))
    params = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in params if n in decay], "weight_decay": args.weight_decay},
        {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
    ]
    betas = (args.adam_beta1, args.adam_beta2)
    opt = torch.optim.AdamW(groups, lr=args.learning_rate, betas=betas, eps=args.adam_epsilon, fused=True)
    warmup = args.get_warmup_steps(total)
    sched = get_scheduler(args.lr_scheduler_type, opt, num_warmup_steps=warmup, num_training_steps=total)
    loader, step, t0 = shared_loader(data, opts, config.basic.seed), 0, None
    while step < total:
        for batch in loader:
            out = model(**{k: v.to(dev, non_blocking=True) for k, v in batch.items()})
            clip_loss(out.image_embeds, out.text_embeds, model.logit_scale).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            step += 1
            if step == opts.warmup:
                sync()
                t0 = time.perf_counter()
            if step >= total:
                break
    sync()
    return opts.steps * opts.batch_size / (time.perf_counter() - t0)


def run_trainer(plain: bool, task, data, config, opts, out: str) -> float:
    timer, model = StepTimer(opts.warmup), new_model(task, config, data)
    if plain:
        kept = {k: getattr(config.training, k) for k in PLAIN_KEYS}
        args = TrainingArguments(output_dir=out, remove_unused_columns=False, **OFF, **kept)
        batches = IndexBatches(data.splits["train"])
        trainer = Trainer(model, args, data_collator=stock_loss, train_dataset=batches, callbacks=[timer])
    else:
        trainer = task.build_trainer(config, model, data, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    if timer.steps != opts.steps:
        raise RuntimeError(f"timed {timer.steps} steps, expected {opts.steps}")
    return opts.steps * opts.batch_size / (timer.t1 - timer.t0)


def data_alone(loader, opts, warmup: int = 2) -> float:
    """Pairs per second a loader yields on its own (``--steps`` batches after ``warmup``)."""
    batches = iter(loader)
    for _ in range(warmup):
        next(batches)
    t0 = time.perf_counter()
    for _ in range(opts.steps):
        next(batches)
    return opts.steps * opts.batch_size / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", "--rounds", dest="repeats", type=int, default=2, help="rounds (a, b, c)")
    opts = parser.parse_args(argv)
    if min(opts.steps, opts.warmup, opts.batch_size, opts.repeats) < 1:
        parser.error("--steps, --warmup, --batch-size and --repeats must be at least 1")
    datasets.disable_progress_bars()
    results: dict[str, list[float]] = {"a_loop": [], "b_trainer": [], "c_cliptrainer": []}
    with tempfile.TemporaryDirectory() as out:
        config, start = experiment(out, opts), time.perf_counter()
        task, data, cliptrainer = build(config)  # data, tokenizer and a first trainer: untimed
        print(f"data, tokenizer and model built in {time.perf_counter() - start:.1f} s", flush=True)
        for r in range(opts.repeats):
            results["a_loop"].append(run_loop(task, data, config, opts))
            results["b_trainer"].append(run_trainer(True, task, data, config, opts, out))
            results["c_cliptrainer"].append(run_trainer(False, task, data, config, opts, out))
            rates = ", ".join(f"{k} {v[-1]:.1f}" for k, v in results.items())
            print(f"round {r + 1}: {rates} pairs/s", flush=True)
        alone_a = data_alone(shared_loader(data, opts, config.basic.seed), opts)
        alone_c = data_alone(cliptrainer.get_train_dataloader(), opts)

    args, params = config.training, sum(p.numel() for p in cliptrainer.model.parameters())
    print(
        f"\nmodel {config.model.name} ({params / 1e6:.2f} M parameters), batch {opts.batch_size}, {opts.steps} "
        f"timed steps after {opts.warmup}, {len(data.splits['train'])} training images of "
        f"{data.info.image_size} px, optim {getattr(args.optim, 'value', args.optim)}, lr {args.learning_rate}, "
        f"device {device()}, torch threads {torch.get_num_threads()}"
    )
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in results.items():
        print(f"{k:16s} median {med[k]:8.1f} pairs/s   runs: {', '.join(f'{s:.1f}' for s in v)}")
    for num, den in (("b_trainer", "a_loop"), ("c_cliptrainer", "a_loop"), ("c_cliptrainer", "b_trainer")):
        paired = statistics.median(n / d for n, d in zip(results[num], results[den]))
        line = f"ratio {num[0]}/{den[0]} = {med[num] / med[den]:.3f} (of medians), {paired:.3f} (median of per-round)"
        if num[0] + den[0] == "ca":  # the per-round ratio cancels slow drifts of the machine
            line += f"   target >= {TARGET}x: {'PASS' if paired >= TARGET else 'FAIL'}"
        print(line)
    print(f"data alone: (a)/(b) loader {alone_a:.0f} pairs/s, (c) loader {alone_c:.0f} pairs/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"peak RSS of the process (all contenders together): {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

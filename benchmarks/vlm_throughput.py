"""VLM training throughput (supervised tokens/s): hand-written PyTorch loop vs VLMTrainer on the same model.

The default VLM experiment (``recipes/configs/synthetic_vqa_llava.toml``: ``llava_tiny`` trained in full,
vision tower included, on ``synthetic_vqa`` conversations about rendered shapes, batch 32, max_length 64, AdamW lr 1e-3
as the recipe's ``optim`` builds it, cosine schedule with 5% warm-up, clipping at ``max_grad_norm``) with
``--images`` training conversations (``[dataset] num_images`` and ``max_samples``: a run fits in one epoch
by default), evaluation and saving off:
  (a) a hand-written loop: the model built by the task's ``build_model`` after ``set_seed`` (the same
      initial weights as (b), checked), the batches of the trainer's own train dataloader (the split's
      ``VLMTransform`` through ``BatchFetchDataset``, Accelerate's seeded sampler: the same batches in the
      same order, checked by their token counts), ``model(**batch).loss`` (transformers' causal-LM loss,
      the mean over supervised tokens; no KV cache, as the Trainer sets), ``clip_grad_norm_``, AdamW with
      the Trainer's weight-decay groups and ``fused`` as its ``optim`` says, the same schedule (the trained
      weights of (a) and (b) are compared: the largest difference is printed, ~0 when both train alike);
  (b) VLMTrainer built through ``build_config`` + ``runner.build`` / ``task.build_trainer`` (console printer
      off; its logging, resource monitor and history recorder on, as a run has them).
Supervised tokens are ``labels[:, 1:] != -100`` summed over the batches of ``--steps`` optimizer steps after
``--warmup`` untimed ones (counted on the device, read after the timing). Rounds alternate (a, b, a, b, ...)
and build fresh models; medians, per-round figures and the ratios b/a (of medians and the median of
per-round ratios; target >= 0.95x on the latter) are printed, then one summary line.

    .venv/bin/python benchmarks/vlm_throughput.py [--steps 60] [--rounds 9] [--threads N]   # ~1 minute
    .venv/bin/python benchmarks/vlm_throughput.py --quick    # smoke run (< 30 s on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import logging
import os
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
from transformers import PrinterCallback, Trainer, get_scheduler, set_seed  # noqa: E402

from neurotrain_hf.config import build_config, read_config_file  # noqa: E402
from neurotrain_hf.runner import build  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "synthetic_vqa_llava.toml"
TARGET = 0.95
IGNORE = -100  # transformers' ignore index (written here, not imported from the task)
QUICK = {"steps": 4, "warmup": 2, "rounds": 1}
OFF = {
    "eval_strategy": "no",
    "save_strategy": "no",
    "plots": False,
    "report_to": "none",
    "disable_tqdm": True,
}


# --- the experiment -----------------------------------------------------------------------------------------
def experiment(out: str, opts):
    """The recipe with batch, step count and dataset size of the run; evaluation and saving off."""
    raw = read_config_file(RECIPE)
    raw["basic"].update({"run_id": "vlm_throughput", "seed": opts.seed, "output_dir": out})
    # num_images images give at least as many conversations; max_samples keeps exactly the first rows
    # (valid/test: unused, smallest allowed)
    raw["dataset"].update(num_images=opts.images, held_out_images=2, max_samples=opts.images)
    raw["training"].pop("metric_for_best_model", None)
    raw["training"].update(OFF, batch_size=opts.batch_size, max_steps=opts.warmup + opts.steps)
    return build_config(raw, source="vlm_throughput")


def new_model(task, config, data) -> torch.nn.Module:
    """The task's model for the config, seeded: both sides start from the same weights."""
    set_seed(config.basic.seed)
    return task.build_model(config, data)


def check_same_init(model: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    differ = [k for k, v in reference.items() if not torch.equal(state[k].cpu(), v)]
    if differ or state.keys() != reference.keys():
        raise SystemExit(f"the models do not start from the same weights: {differ[:3]} ...")


def weight_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Largest absolute difference between two models' weights (same training: rounding only)."""
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].float().cpu() - sb[k].float().cpu()).abs().max()) for k in sa)


def supervised(labels: torch.Tensor) -> torch.Tensor:
    """Supervised tokens of a batch (the loss predicts token t+1 from t): a device tensor, no sync."""
    return (labels[:, 1:] != IGNORE).sum()


# --- (a) the hand-written loop -------------------------------------------------------------------------------
def optimizer_for(model: torch.nn.Module, args) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters with the Trainer's weight-decay groups and fused setting."""
    decay = set(Trainer.get_decay_parameter_names(None, model))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if n in decay], "weight_decay": args.weight_decay},
        {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
    ]
    fused = str(getattr(args.optim, "value", args.optim)) == "adamw_torch_fused"
    return torch.optim.AdamW(
        groups,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        **({"fused": True} if fused else {}),
    )


def run_loop(task, data, config, loader_source, reference, opts) -> tuple[float, int, torch.nn.Module]:
    """(supervised tokens/s, timed tokens, trained model) of the loop on the trainer's own train dataloader."""
    dev, args, total = device(), config.training, opts.warmup + opts.steps
    model = new_model(task, config, data).to(dev).train()
    check_same_init(model, reference)
    # no KV cache while training, as the Trainer sets it (``use_cache``) and training scripts do: with the
    # text config's default (True) every forward fills a DynamicCache, ~6% of a step here
    model.config.use_cache = False
    opt = optimizer_for(model, args)
    warmup = args.get_warmup_steps(total)
    sched = get_scheduler(args.lr_scheduler_type, opt, num_warmup_steps=warmup, num_training_steps=total)
    loader = loader_source.get_train_dataloader()
    params = [p for p in model.parameters() if p.requires_grad]
    step, epoch, t0, counts = 0, 0, None, []
    while step < total:
        loader.set_epoch(epoch)
        for batch in loader:
            batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
            if step >= opts.warmup:
                counts.append(supervised(batch["labels"]))
            model(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step == opts.warmup:
                sync()
                t0 = time.perf_counter()
            if step >= total:
                break
        epoch += 1
    sync()
    seconds, tokens = time.perf_counter() - t0, int(torch.stack(counts).sum())
    return tokens / seconds, tokens, model


# --- (b) VLMTrainer through the config path -----------------------------------------------------------------
def run_trainer(task, data, config, reference, opts) -> tuple[float, int, torch.nn.Module]:
    """(supervised tokens/s, timed tokens, trained model) of VLMTrainer; its batches counted as they reach training_step."""
    timer, model = StepTimer(opts.warmup), new_model(task, config, data)
    check_same_init(model, reference)
    trainer = task.build_trainer(config, model, data, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    counts, step = [], trainer.training_step

    def counted(model, inputs, *rest, **kwargs):
        counts.append(supervised(inputs["labels"]))
        return step(model, inputs, *rest, **kwargs)

    trainer.training_step = counted
    trainer.train()
    total = opts.warmup + opts.steps
    if timer.steps != opts.steps or len(counts) != total:
        raise RuntimeError(
            f"timed {timer.steps} steps of {len(counts)} batches, expected {opts.steps} of {total}"
        )
    tokens = int(torch.stack(counts[opts.warmup :]).sum())
    return tokens / (timer.t1 - timer.t0), tokens, trainer.model


def data_alone(loader, opts, warmup: int = 2) -> float:
    """Supervised tokens/s the loader yields on its own (``--steps`` batches after ``warmup``)."""

    def batches():
        while True:
            yield from loader

    stream = batches()
    for _ in range(warmup):
        next(stream)
    t0, tokens = time.perf_counter(), 0
    for _ in range(opts.steps):
        tokens += int(supervised(next(stream)["labels"]))
    return tokens / (time.perf_counter() - t0)


# --- report -------------------------------------------------------------------------------------------------
def report(results: dict[str, list[float]], unit: str) -> float:
    """Medians, per-round figures and the ratio b/a; returns the median of the per-round ratios."""
    (a, runs_a), (b, runs_b) = results.items()
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in results.items():
        print(f"  {k:18s} median {med[k]:9.1f} {unit}   runs: {', '.join(f'{s:.1f}' for s in v)}")
    paired = statistics.median(y / x for x, y in zip(runs_a, runs_b))
    verdict = "PASS" if paired >= TARGET else "FAIL"
    print(
        f"  ratio b/a = {med[b] / med[a]:.3f} (of medians), {paired:.3f} (median of per-round)"
        f"   target >= {TARGET}x: {verdict}"
    )
    return paired


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps per training run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds; medians are reported")
    parser.add_argument(
        "--images", type=int, default=None, help="training conversations (default: one epoch covers a run)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 steps after 2, 1 round")
    if parser.parse_known_args(argv)[0].quick:  # options given explicitly still win
        parser.set_defaults(**QUICK)
    opts = parser.parse_args(argv)
    opts.images = opts.images or (opts.warmup + opts.steps) * opts.batch_size
    if min(opts.batch_size, opts.steps, opts.warmup, opts.rounds) < 1 or opts.images < 8:
        parser.error("--batch-size, --steps, --warmup and --rounds must be at least 1, --images at least 8")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    logging.getLogger("neurotrain_hf").setLevel(logging.WARNING)
    datasets.disable_progress_bars()
    results: dict[str, list[float]] = {"a_torch_loop": [], "b_vlm_trainer": []}
    tokens: dict[str, set[int]] = {"a_torch_loop": set(), "b_vlm_trainer": set()}
    with tempfile.TemporaryDirectory() as out:
        config, start = experiment(out, opts), time.perf_counter()
        task, data, first = build(config)  # data, processor and a first trainer (its loader serves (a))
        reference = {
            k: v.detach().cpu().clone() for k, v in new_model(task, config, data).state_dict().items()
        }
        print(f"data, processor and model built in {time.perf_counter() - start:.1f} s", flush=True)
        largest = 0.0
        for r in range(opts.rounds):
            trained = {}
            for name, run in (
                ("a_torch_loop", lambda: run_loop(task, data, config, first, reference, opts)),
                ("b_vlm_trainer", lambda: run_trainer(task, data, config, reference, opts)),
            ):
                rate, count, trained[name] = run()
                results[name].append(rate)
                tokens[name].add(count)
            largest = max(largest, weight_difference(*trained.values()))
            ta, tb = (v[-1] for v in results.values())
            print(
                f"round {r + 1}: a {ta:.0f}, b {tb:.0f} supervised tokens/s (b/a {tb / ta:.3f})", flush=True
            )
        alone = data_alone(first.get_train_dataloader(), opts)

    args, model = config.training, first.model
    params = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tol = 1e-3 * max(1.0, opts.steps / 60)
    print(
        f"same init (checked), largest |a - b| over the trained weights {largest:.2e}"
        + ("   (NOT the same training: check optimizer and schedule)" if largest > tol else "")
    )
    same = tokens["a_torch_loop"] == tokens["b_vlm_trainer"] and len(tokens["a_torch_loop"]) == 1
    print(
        f"\nmodel {config.model.name} ({params / 1e6:.2f} M parameters, {trained / 1e6:.2f} M trained), "
        f"{len(data.splits['train'])} training conversations, max_length {args.max_length}, device {device()}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"training: batch {opts.batch_size}, {opts.steps} timed steps after {opts.warmup}, optim "
        f"{getattr(args.optim, 'value', args.optim)}, lr {args.learning_rate}, "
        f"{getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)} schedule, clipping at "
        f"{args.max_grad_norm}; supervised tokens per timed run: a {sorted(tokens['a_torch_loop'])}, "
        f"b {sorted(tokens['b_vlm_trainer'])}"
        + ("" if same else "   (NOT the same batches: check the loaders)")
    )
    ratio = report(results, "tokens/s")
    print(f"  data alone: the trainer's loader {alone:.0f} supervised tokens/s")
    print(
        f"SUMMARY vlm_throughput: training b/a {ratio:.3f}x (target >= {TARGET}x): "
        f"{'PASS' if ratio >= TARGET and same else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

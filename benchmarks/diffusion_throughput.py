"""Diffusion throughput: training images/s (hand-written accelerate loop vs DiffusionTrainer) and sampling
images/s (diffusers' ``DDIMPipeline`` vs the task's sampler) on the same UNet.

Training, the default diffusion experiment (``recipes/configs/color_shapes_diffusion.toml``:
class-conditioned ``color_shapes`` at 32 px, ``unet2d`` of the recipe, batch 64, EMA decay 0.995 with
warm-up, min-SNR gamma 5, condition dropout 0.1, fused AdamW lr 2e-3, cosine schedule with 50 warm-up
steps, clipping at 1.0):
  (a) a hand-written loop in the style of diffusers' ``examples/unconditional_image_generation/
      train_unconditional.py``: ``Accelerator``; ``UNet2DModel`` built here with the recipe's kwargs
      (checked equal to the task's UNet config); the train split's images decoded once into memory (uint8)
      and served one batch per fetch (scale to [-1, 1], random horizontal flip; ``--loop-data dataset``:
      the split itself through its ``set_transform`` transform, as the example); global-RNG noise and
      timesteps, ``DDPMScheduler.add_noise``, the class id replaced by the null class with the condition
      dropout, epsilon MSE weighted by min(SNR, g) / SNR (diffusers' ``compute_snr``, as its
      ``train_text_to_image.py``); AdamW as the Trainer builds it, the same schedule, clipping,
      diffusers' ``EMAModel`` stepped per optimizer step; loss read back every ``logging_steps``;
  (b) DiffusionTrainer built through ``build_config`` + ``runner.build`` (evaluation, FID and saving off).
Images/s over ``--steps`` optimizer steps after ``--warmup`` untimed ones; each round builds fresh models.

Sampling, one unconditional UNet of the same architecture (random weights; speed does not depend on them),
DDIM on the recipe's training schedule, ``--sample-steps`` steps (default: the recipe's ``sampling_steps``),
``--sample-batch`` images, one CPU generator per image (seeds 0..B-1) for both, images returned as a
numpy (B, H, W, C) array in [0, 1] by both:
  (a) ``diffusers.DDIMPipeline(unet, scheduler)(..., output_type="np")``;
  (b) the task's sampler as the Predictor calls it: ``SamplingInference`` (``sample_generators``, the
      sampling scheduler from the training one, ``pipeline.generate``) on a ``DiffusionModel``.
One untimed call each, then ``--sample-reps`` timed calls each, alternating (a, b, a, b, ...); the
largest difference between (a)'s and (b)'s images (same noise: expected ~0) is printed.

Rounds alternate (a, b, a, b, ...); medians, per-round figures and the ratios b/a (of medians and the median
of per-round ratios; target >= 0.95x on the latter) are printed, then one summary line (PASS: both met).

    .venv/bin/python benchmarks/diffusion_throughput.py [--steps 30] [--rounds 3] [--sample-batch 64]
    .venv/bin/python benchmarks/diffusion_throughput.py --quick    # smoke run (< 1 minute on 2 CPU cores)
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
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler, UNet2DModel  # noqa: E402
from diffusers.training_utils import EMAModel, compute_snr  # noqa: E402
from timing import StepTimer, device, sync  # noqa: E402
from transformers import PrinterCallback, get_scheduler, set_seed  # noqa: E402

from neurotrain_hf.config import build_config, read_config_file  # noqa: E402
from neurotrain_hf.runner import build  # noqa: E402
from neurotrain_hf.tasks.diffusion.inference import SamplingInference  # noqa: E402
from neurotrain_hf.tasks.diffusion.models import DiffusionModel, DiffusionModelConfig  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "color_shapes_diffusion.toml"
TARGET = 0.95
QUICK = {"images": 256, "steps": 3, "warmup": 2, "rounds": 1, "sample_batch": 16, "sample_steps": 5}
QUICK.update(sample_reps=1)
OFF = {"eval_strategy": "no", "save_strategy": "no", "fid_features": None, "plots": False}
OFF.update(report_to="none", disable_tqdm=True)
# UNet2DModel config keys the two sides must agree on (the rest are diffusers' defaults)
UNET_KEYS = ("sample_size", "in_channels", "out_channels", "block_out_channels", "down_block_types")
UNET_KEYS += ("up_block_types", "layers_per_block", "norm_num_groups", "attention_head_dim", "dropout")
UNET_KEYS += ("num_class_embeds", "class_embed_type", "mid_block_type", "add_attention", "act_fn")


# --- the experiment and the hand-written model ------------------------------------------------------------
def experiment(out: str, opts):
    """The recipe with batch, step count and dataset size of the run; evaluation, FID and saving off."""
    raw = read_config_file(RECIPE)
    raw["basic"].update({"run_id": "diffusion_throughput", "seed": opts.seed, "output_dir": out})
    raw["dataset"]["num_samples"] = opts.images
    raw["training"].pop("metric_for_best_model", None)  # "fid": nothing is evaluated
    raw["training"].update(OFF, batch_size=opts.batch_size, max_steps=opts.warmup + opts.steps)
    # both sides train the objective of diffusers' examples: epsilon with min-SNR weights (the recipe's
    # v-prediction costs the same per step; min-SNR adds the weight computation to both)
    raw["training"].update(prediction_type="epsilon", snr_gamma=5.0)
    config = build_config(raw, source="diffusion_throughput")
    args = config.training
    if args.ema_decay is None or args.snr_gamma is None or args.prediction_type != "epsilon":
        raise SystemExit(f"{RECIPE.name}: expected EMA, min-SNR and epsilon prediction")
    return config


def unet_kwargs(config, num_class_embeds: int | None) -> dict:
    """``UNet2DModel`` kwargs of the recipe's ``[model] kwargs``, written out here (not via ``unet2d``)."""
    kw = dict(config.model.kwargs)
    channels = tuple(kw["block_out_channels"])
    levels = set(kw.get("attention_levels", [len(channels) - 1]))
    return {
        "sample_size": config.dataset.image_size,
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": channels,
        "down_block_types": tuple(
            "AttnDownBlock2D" if i in levels else "DownBlock2D" for i in range(len(channels))
        ),
        "up_block_types": tuple(
            "AttnUpBlock2D" if i in levels else "UpBlock2D" for i in reversed(range(len(channels)))
        ),
        "layers_per_block": kw.get("layers_per_block", 1),
        "norm_num_groups": kw.get("norm_num_groups", min(32, channels[0])),
        "attention_head_dim": kw.get("attention_head_dim", 8),
        "num_class_embeds": num_class_embeds,
    }


def check_same_unet(ours: UNet2DModel, theirs: torch.nn.Module) -> None:
    """The loop's UNet must be the trainer's architecture (same config keys, same parameter count)."""
    diff = [k for k in UNET_KEYS if ours.config.get(k) != theirs.config.get(k)]
    counts = sum(p.numel() for p in ours.parameters()), sum(p.numel() for p in theirs.parameters())
    if diff or counts[0] != counts[1]:
        got = {k: (ours.config.get(k), theirs.config.get(k)) for k in diff}
        raise SystemExit(f"the loop's UNet differs from the task's: {got}, parameters {counts}")


# --- training data ------------------------------------------------------------------------------------------
def decoded(split: datasets.Dataset, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(images N x 3 x H x W uint8, labels N) of the train split, read once (numpy gives int64: chunks)."""
    view = split.with_format("numpy", columns=["image", "label"])
    images, labels = [], []
    for start in range(0, len(split), chunk):
        rows = view[start : start + chunk]
        images.append(torch.from_numpy(rows["image"].astype(np.uint8)).permute(0, 3, 1, 2))
        labels.append(torch.from_numpy(rows["label"]))
    return torch.cat(images).contiguous(), torch.cat(labels).long()


class MemoryBatches(torch.utils.data.Dataset):
    """One batch per fetch (DataLoader calls ``__getitems__``) from the decoded images: [-1, 1], flips."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, flip: float) -> None:
        self.images, self.labels, self.flip = images, labels, flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows = torch.as_tensor(indices)
        pixels = self.images[rows].float().div_(127.5).sub_(1.0)
        if self.flip > 0:
            flip = (torch.rand(len(rows)) < self.flip).view(-1, 1, 1, 1)
            pixels = torch.where(flip, pixels.flip(-1), pixels)
        return {"pixel_values": pixels, "class_labels": self.labels[rows]}


def passthrough(batch):
    return batch


def loop_loader(data, memory, opts, config) -> torch.utils.data.DataLoader:
    """(a)'s loader: the in-memory batches, or (``--loop-data dataset``) the split with its own transform."""
    kwargs = {"batch_size": opts.batch_size, "shuffle": True, "pin_memory": device().type == "cuda"}
    kwargs["num_workers"] = config.training.dataloader_num_workers
    if opts.loop_data == "dataset":  # train_unconditional.py: set_transform'ed split, default collate
        return torch.utils.data.DataLoader(data.splits["train"], **kwargs)
    batches = MemoryBatches(*memory, flip=config.augmentation.horizontal_flip)
    return torch.utils.data.DataLoader(batches, collate_fn=passthrough, **kwargs)


# --- (a) the hand-written accelerate loop -------------------------------------------------------------------
def run_loop(data, memory, config, trainer_unet, opts) -> float:
    args, total = config.training, opts.warmup + opts.steps
    accelerator = Accelerator(mixed_precision="no")
    set_seed(opts.seed)
    model = UNet2DModel(**unet_kwargs(config, len(data.info.class_names) + 1))
    check_same_unet(model, trainer_unet)
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=args.num_train_timesteps,
        beta_schedule=args.beta_schedule,
        prediction_type=args.prediction_type,
    )
    fused = str(getattr(args.optim, "value", args.optim)) == "adamw_torch_fused"
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
        **({"fused": True} if fused else {}),
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=args.get_warmup_steps(total),
        num_training_steps=total,
    )
    ema = EMAModel(
        model.parameters(),
        decay=args.ema_decay,
        use_ema_warmup=args.ema_warmup,
        inv_gamma=args.ema_inv_gamma,
        power=args.ema_power,
        model_cls=UNet2DModel,
        model_config=model.config,
    )
    loader = loop_loader(data, memory, opts, config)
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    ema.to(accelerator.device)
    null_class = len(data.info.class_names)
    model.train()
    step, t0, logged = 0, None, []
    while step < total:
        for batch in loader:
            clean, labels = batch["pixel_values"], batch["class_labels"]
            noise = torch.randn(clean.shape, dtype=clean.dtype, device=clean.device)
            bsz = clean.shape[0]
            timesteps = torch.randint(0, args.num_train_timesteps, (bsz,), device=clean.device).long()
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            drop = torch.rand(bsz, device=clean.device) < args.condition_dropout
            labels = torch.where(drop, torch.full_like(labels, null_class), labels)
            with accelerator.accumulate(model):
                prediction = model(noisy, timesteps, class_labels=labels).sample
                snr = compute_snr(noise_scheduler, timesteps)
                weights = torch.stack([snr, args.snr_gamma * torch.ones_like(timesteps)], dim=1).min(dim=1)[0]
                weights = weights / snr
                loss = F.mse_loss(prediction.float(), noise.float(), reduction="none")
                loss = (loss.mean(dim=list(range(1, loss.ndim))) * weights).mean()
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                ema.step(model.parameters())
                step += 1
                if step % args.logging_steps == 0:
                    logged.append(loss.detach().item())
                if step == opts.warmup:
                    sync()
                    t0 = time.perf_counter()
                if step >= total:
                    break
    sync()
    return opts.steps * opts.batch_size / (time.perf_counter() - t0)


# --- (b) DiffusionTrainer through the config path -----------------------------------------------------------
def run_trainer(task, data, config, opts) -> float:
    timer = StepTimer(opts.warmup)
    set_seed(opts.seed)
    trainer = task.build_trainer(config, task.build_model(config, data), data, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    if timer.steps != opts.steps:
        raise RuntimeError(f"timed {timer.steps} steps, expected {opts.steps}")
    return opts.steps * opts.batch_size / (timer.t1 - timer.t0)


def data_alone(loader, opts, warmup: int = 2) -> float:
    """Images/s a loader yields on its own (``--steps`` batches after ``warmup``), epochs wrapping."""

    def batches():
        while True:
            yield from loader

    stream = batches()
    for _ in range(warmup):
        next(stream)
    t0 = time.perf_counter()
    for _ in range(opts.steps):
        next(stream)
    return opts.steps * opts.batch_size / (time.perf_counter() - t0)


# --- sampling -----------------------------------------------------------------------------------------------
def sampling_setup(config, opts):
    """(``DiffusionModel`` around an unconditional UNet of the recipe's architecture, the task's
    ``SamplingInference`` for it, a ``DDIMPipeline`` on the same UNet)."""
    args = config.training
    set_seed(opts.seed)
    unet = UNet2DModel(**unet_kwargs(config, None)).to(device()).eval()
    ddpm = DDPMScheduler(
        num_train_timesteps=args.num_train_timesteps,
        beta_schedule=args.beta_schedule,
        prediction_type=args.prediction_type,
    )
    size = config.dataset.image_size
    model_config = DiffusionModelConfig(conditioning="none", image_size=size, channels=3)
    model = DiffusionModel(model_config, unet, ddpm, ema=False)
    pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler.from_config(ddpm.config))
    pipe.set_progress_bar_config(disable=True)
    settings = {"sampler": "ddim", "sampling_steps": opts.sample_steps, "guidance_scale": 1.0}
    return model, SamplingInference(settings), pipe


def sample_task(model, inference, opts) -> np.ndarray:
    """The task's sampler as the Predictor calls it (per-sample generators from ``noise_seed``)."""
    seeds = torch.arange(opts.sample_batch)
    out = inference(model, {"sample_id": seeds, "noise_seed": seeds})
    return out["images"].cpu().permute(0, 2, 3, 1).numpy()


def sample_pipe(pipe, opts) -> np.ndarray:
    generators = [torch.Generator().manual_seed(i) for i in range(opts.sample_batch)]
    return pipe(
        batch_size=opts.sample_batch,
        generator=generators,
        num_inference_steps=opts.sample_steps,
        output_type="np",
    ).images


def time_samplers(samplers: dict, opts) -> dict[str, tuple[float, np.ndarray]]:
    """Per sampler: (images/s over ``--sample-reps`` calls after one untimed call, its last images); the
    timed calls alternate between the samplers, so a drift of the machine hits both alike."""
    images = {name: sample() for name, sample in samplers.items()}
    spent = dict.fromkeys(samplers, 0.0)
    for _ in range(opts.sample_reps):
        for name, sample in samplers.items():
            sync()
            t0 = time.perf_counter()
            images[name] = sample()
            sync()
            spent[name] += time.perf_counter() - t0
    return {name: (opts.sample_reps * opts.sample_batch / spent[name], images[name]) for name in samplers}


# --- report -------------------------------------------------------------------------------------------------
def report(results: dict[str, list[float]], unit: str) -> float:
    """Medians, per-round figures and the ratio b/a; returns the median of the per-round ratios."""
    (a, runs_a), (b, runs_b) = results.items()
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in results.items():
        print(f"  {k:22s} median {med[k]:9.1f} {unit}   runs: {', '.join(f'{s:.1f}' for s in v)}")
    paired = statistics.median(y / x for x, y in zip(runs_a, runs_b))
    verdict = "PASS" if paired >= TARGET else "FAIL"
    print(
        f"  ratio b/a = {med[b] / med[a]:.3f} (of medians), {paired:.3f} (median of per-round)"
        f"   target >= {TARGET}x: {verdict}"
    )
    return paired


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="[dataset] num_samples (training images)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per training run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--sample-batch", type=int, default=64, help="images per sampling call")
    parser.add_argument("--sample-steps", type=int, default=None, help="DDIM steps (default: the recipe's)")
    parser.add_argument("--sample-reps", type=int, default=2, help="timed sampling calls per round and side")
    parser.add_argument(
        "--loop-data", choices=["memory", "dataset"], default="memory", help="(a)'s data: see the docstring"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 256 images, 3 steps, 1 round, 16 samples"
    )
    if parser.parse_known_args(argv)[0].quick:  # options given explicitly still win
        parser.set_defaults(**QUICK)
    opts = parser.parse_args(argv)
    counts = (
        opts.images,
        opts.batch_size,
        opts.steps,
        opts.warmup,
        opts.rounds,
        opts.sample_batch,
        opts.sample_reps,
    )
    if min(counts) < 1 or (opts.sample_steps is not None and opts.sample_steps < 1):
        parser.error(
            "counts (--images, --batch-size, --steps, --warmup, --rounds, --sample-*) must be at least 1"
        )
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    logging.getLogger("neurotrain_hf").setLevel(logging.WARNING)
    datasets.disable_progress_bars()
    train: dict[str, list[float]] = {"a_accelerate_loop": [], "b_diffusion_trainer": []}
    sample: dict[str, list[float]] = {"a_ddim_pipeline": [], "b_task_sampler": []}
    with tempfile.TemporaryDirectory() as out:
        config, start = experiment(out, opts), time.perf_counter()
        task, data, first = build(config)  # data and a first trainer: untimed
        memory = decoded(data.splits["train"])
        print(f"data and model built in {time.perf_counter() - start:.1f} s", flush=True)
        opts.sample_steps = opts.sample_steps or config.training.sampling_steps
        model, inference, pipe = sampling_setup(config, opts)
        largest = 0.0
        for r in range(opts.rounds):
            train["a_accelerate_loop"].append(run_loop(data, memory, config, first.model.unet, opts))
            train["b_diffusion_trainer"].append(run_trainer(task, data, config, opts))
            timed = time_samplers(
                {
                    "a_ddim_pipeline": lambda: sample_pipe(pipe, opts),
                    "b_task_sampler": lambda: sample_task(model, inference, opts),
                },
                opts,
            )
            for name, (rate, _images) in timed.items():
                sample[name].append(rate)
            largest = max(
                largest, float(np.abs(timed["a_ddim_pipeline"][1] - timed["b_task_sampler"][1]).max())
            )
            (ta, tb), (sa, sb) = (v[-1] for v in train.values()), (v[-1] for v in sample.values())
            print(
                f"round {r + 1}: training a {ta:.1f}, b {tb:.1f} images/s (b/a {tb / ta:.3f}); "
                f"sampling a {sa:.1f}, b {sb:.1f} images/s (b/a {sb / sa:.3f})",
                flush=True,
            )
        alone_a = data_alone(loop_loader(data, memory, opts, config), opts)
        alone_b = data_alone(first.get_train_dataloader(), opts)

    args, params = config.training, sum(p.numel() for p in first.model.unet.parameters())
    print(
        f"\nUNet {dict(config.model.kwargs)} ({params / 1e6:.2f} M parameters), {len(data.splits['train'])} "
        f"class-conditioned {data.info.image_size} px images, device {device()}, torch threads "
        f"{torch.get_num_threads()}"
    )
    print(
        f"training: batch {opts.batch_size}, {opts.steps} timed steps after {opts.warmup}, optim "
        f"{getattr(args.optim, 'value', args.optim)}, lr {args.learning_rate}, EMA {args.ema_decay}, min-SNR "
        f"gamma {args.snr_gamma}, condition dropout {args.condition_dropout}, loop data {opts.loop_data}"
    )
    ratio_train = report(train, "images/s")
    print(f"  data alone: (a) loader {alone_a:.0f} images/s, (b) loader {alone_b:.0f} images/s")
    print(
        f"sampling: DDIM, {opts.sample_steps} steps, batch {opts.sample_batch}, {opts.sample_reps} timed "
        f"calls after 1; largest |a - b| over the images {largest:.2e}"
        + ("   (NOT the same images: check the settings)" if largest > 1e-4 else "")
    )
    ratio_sample = report(sample, "images/s")
    ok = ratio_train >= TARGET and ratio_sample >= TARGET
    print(
        f"SUMMARY diffusion_throughput: training b/a {ratio_train:.3f}x, sampling b/a {ratio_sample:.3f}x "
        f"(target >= {TARGET}x each): {'PASS' if ok else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

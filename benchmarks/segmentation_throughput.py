"""Segmentation training samples/s: hand-written loop over in-memory arrays vs NeuroTrainer (config path).

Data: ``--images`` synthetic retinas (``tasks.segmentation.synthetic.synthetic_split``) of ``--image-size``
pixels (default: patch + 32), generated once and registered by this script as the dataset
``seg_throughput_retina`` (``register_dataset``); both sides train on the same uint8 arrays.

  (a) a hand-written loop: a map-style dataset over the in-memory uint8 arrays that builds
      ``tv_tensors.Image``/``tv_tensors.Mask`` per sample, applies the transform object of
      ``joint_random_ops(config.augmentation, channels)`` (the same joint crop with ``foreground_ratio``,
      flips, rotation, colour jitter and gamma that neurotrain builds), then scales to [0, 1] and
      normalises with neurotrain's mean/std; ``DataLoader`` (shuffle, ``--workers``), loss
      ``build_loss("dice+ce")``, fused AdamW (weight decay off for biases and norm weights, as the
      Trainer), the config's schedule, gradient clipping at 1.0;
  (b) SegmentationTrainer (NeuroTrainer) from the default segmentation experiment
      (``recipes/configs/synthetic_vessels.toml``) with ``[dataset] name = "seg_throughput_retina"``,
      ``[augmentation] random_crop = --patch`` and ``[training] batch_size``, ``dataloader_num_workers``,
      ``max_steps`` set; evaluation and saving off, logging every 10 steps as the recipe.
Same model (``unet``, the recipe's depth 4, base 16, batch norm, built by the task's ``build_model`` for
both), batch size, device and ``--workers``. The loop carries the vessel mask only; neurotrain's
transform also carries the FOV mask (third tensor) through the same ops. neurotrain's first ``build``
(mean/std pass) is done once, untimed; each round builds a fresh model and trainer.

Samples/s is timed over ``--steps`` optimizer steps after ``--warmup`` steps (loader start-up is in the
warm-up; epoch restarts in the timed region are paid by both). Rounds alternate (a, b, a, b, ...); the
per-round figures, medians and the ratio b/a (target >= 0.95x, also as the median of per-round ratios)
are printed. Data-loading share of (b): "wait" is the time the training loop spends getting its batches
(``Trainer.get_batch_samples``, wrapped: dataset fetch + transform with 0 workers, waiting on workers
otherwise, plus the move to the device) over the timed steps' wall time; "alone" is the time the train
dataloader takes to produce the same number of batches on its own (after as many warm-up batches),
over that same wall time. The loop's wait share (time in ``next(loader)``) is printed for comparison.

    .venv/bin/python benchmarks/segmentation_throughput.py [--steps 100] [--rounds 3] [--workers 0]
    .venv/bin/python benchmarks/segmentation_throughput.py --workers 2 --batch-size 8 --patch 128
    .venv/bin/python benchmarks/segmentation_throughput.py --quick    # 64 px patches, a few steps
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
from timing import StepTimer, device, sync  # noqa: E402
from torchvision import tv_tensors  # noqa: E402
from torchvision.transforms.v2 import functional as TF  # noqa: E402
from transformers import PrinterCallback, get_scheduler, set_seed  # noqa: E402

from neurotrain_hf.config import build_config, read_config_file  # noqa: E402
from neurotrain_hf.data import DatasetSource, register_dataset  # noqa: E402
from neurotrain_hf.losses import build_loss  # noqa: E402
from neurotrain_hf.runner import build  # noqa: E402
from neurotrain_hf.tasks.segmentation.synthetic import synthetic_split  # noqa: E402
from neurotrain_hf.tasks.segmentation.transforms import joint_random_ops  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "synthetic_vessels.toml"
DATASET = "seg_throughput_retina"
LOSS = "dice+ce"
TARGET = 0.95
QUICK = {"images": 16, "patch": 64, "batch_size": 4, "steps": 4, "warmup": 2, "rounds": 1}


# --- data -----------------------------------------------------------------------------------------------
def make_split(opts) -> datasets.Dataset:
    """The train split (fixed-shape uint8 columns), registered as ``DATASET`` for the config path."""
    split = synthetic_split("train", opts.images, size=opts.image_size)
    register_dataset(DATASET)(lambda cfg: DatasetSource(datasets.DatasetDict({"train": split})))
    return split


def arrays(split: datasets.Dataset, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(images N x H x W x 3, masks N x H x W), uint8, in memory.

    Read in chunks: the numpy format gives these uint8 columns as int64 (8x the memory).
    """
    n, size = len(split), split.features["mask"].shape[0]
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=np.uint8)
    view = split.with_format("numpy", columns=["image", "mask"])
    for start in range(0, n, chunk):
        rows = view[start : start + chunk]
        images[start : start + chunk] = rows["image"]
        masks[start : start + chunk] = rows["mask"]
    return images, masks


class LoopDataset(torch.utils.data.Dataset):
    """Per sample: tv_tensors from the uint8 arrays, the joint random ops, scale and normalise."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, ops, mean, std) -> None:
        self.images, self.masks, self.ops = images, masks, ops
        self.mean, self.std = list(mean), list(std)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = tv_tensors.Image(torch.from_numpy(self.images[i]).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(self.masks[i]))
        if self.ops is not None:
            image, mask = self.ops(image, mask)
        x = TF.to_dtype(image.as_subclass(torch.Tensor), torch.float32, scale=True)
        return TF.normalize(x, self.mean, self.std), mask.as_subclass(torch.Tensor).long()


# --- (a) hand-written loop ------------------------------------------------------------------------------
def run_loop(task, data, config, images, masks, opts) -> dict:
    dev = device()
    args = config.training
    ops = joint_random_ops(config.augmentation, data.info.channels)
    set_seed(opts.seed)
    loader = torch.utils.data.DataLoader(
        LoopDataset(images, masks, ops, data.info.mean, data.info.std),
        batch_size=opts.batch_size,
        shuffle=True,
        num_workers=opts.workers,
        pin_memory=dev.type == "cuda",
    )
    model = task.build_model(config, data).to(dev).train()
    loss_fn = build_loss(LOSS)
    # As the Trainer: fused AdamW; no weight decay on biases (here also the norm weights and biases, the
    # 1-D parameters: the U-Net's convolutions have no bias with batch norm).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(
        groups,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        fused=True,
    )
    total = opts.warmup + opts.steps
    scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=total
    )
    step, t0, wait = 0, None, 0.0
    while step < total:
        batches = iter(loader)
        while step < total:
            start = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if t0 is not None:
                wait += time.perf_counter() - start
            loss = loss_fn(model(pixel_values=x).logits, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == opts.warmup:
                sync()
                t0 = time.perf_counter()
    sync()
    wall = time.perf_counter() - t0
    return {"rate": opts.steps * opts.batch_size / wall, "wall": wall, "wait": wait}


# --- (b) NeuroTrainer through the config path -----------------------------------------------------------
def neuro_config(out: str, opts):
    """The default segmentation experiment on the registered dataset, patches of ``--patch``."""
    raw = read_config_file(RECIPE)
    raw["basic"].update({"run_id": "segmentation_throughput", "seed": opts.seed, "output_dir": out})
    raw["dataset"] = {"name": DATASET, "valid_ratio": 0.0, "test_ratio": 0.0}
    raw["augmentation"]["random_crop"] = opts.patch
    raw["training"].update(
        {
            "batch_size": opts.batch_size,
            "per_device_eval_batch_size": opts.batch_size,
            "max_steps": opts.warmup + opts.steps,
            "dataloader_num_workers": opts.workers,
            "eval_strategy": "no",
            "save_strategy": "no",
            "plots": False,
            "report_to": "none",
            "disable_tqdm": True,
        }
    )
    return build_config(raw, source="segmentation_throughput")


class FetchTimer(StepTimer):
    """A ``StepTimer`` that also adds up the batch fetches made during the timed steps."""

    def __init__(self, warmup: int) -> None:
        super().__init__(warmup)
        self.wait = 0.0

    def timed_fetch(self, fetch):
        """Wraps ``Trainer.get_batch_samples``: adds its time to ``wait`` once the timed steps began."""

        def wrapped(*args, **kwargs):
            start = time.perf_counter()
            out = fetch(*args, **kwargs)
            if self.t0 is not None:
                self.wait += time.perf_counter() - start
            return out

        return wrapped


def loader_alone(trainer, warmup: int, steps: int) -> float:
    """Seconds the train dataloader takes for ``steps`` batches after ``warmup`` untimed ones."""
    loader = trainer.get_train_dataloader()
    done, t0 = 0, None
    while done < warmup + steps:
        for _batch in loader:
            done += 1
            if done == warmup:
                sync()
                t0 = time.perf_counter()
            if done >= warmup + steps:
                break
    sync()
    return time.perf_counter() - t0


def run_neurotrainer(task, data, config, opts) -> dict:
    timer = FetchTimer(opts.warmup)
    set_seed(opts.seed)
    trainer = task.build_trainer(config, task.build_model(config, data), data, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    trainer.get_batch_samples = timer.timed_fetch(trainer.get_batch_samples)
    trainer.train()
    if timer.steps != opts.steps:
        raise RuntimeError(f"timed {timer.steps} steps, expected {opts.steps}")
    wall = timer.t1 - timer.t0
    alone = loader_alone(trainer, opts.warmup, opts.steps)
    return {"rate": opts.steps * opts.batch_size / wall, "wall": wall, "wait": timer.wait, "alone": alone}


# --- main -----------------------------------------------------------------------------------------------
def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128, help="training images generated")
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: patch + 32)")
    parser.add_argument("--patch", type=int, default=256, help="[augmentation] random_crop")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--workers", type=int, default=0, help="dataloader_num_workers of both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 16 images, 64 px patches, 4 steps, 1 round"
    )
    if parser.parse_known_args(argv)[0].quick:  # smaller defaults; options given explicitly still win
        parser.set_defaults(**QUICK)
    opts = parser.parse_args(argv)
    if opts.warmup < 1 or opts.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    opts.image_size = opts.image_size or opts.patch + 32
    if opts.image_size < opts.patch:
        parser.error("--image-size must be at least --patch")
    return opts


def share(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:5.1f}%"


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    logging.getLogger("neurotrain_hf").setLevel(logging.WARNING)
    datasets.disable_progress_bars()
    start = time.perf_counter()
    split = make_split(opts)
    images, masks = arrays(split)
    print(
        f"generated {opts.images} synthetic retinas of {opts.image_size} px in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as out:
        config = neuro_config(out, opts)
        start = time.perf_counter()
        task, data, _ = build(config)  # data preparation and the mean/std pass: untimed
        print(
            f"neurotrain build {time.perf_counter() - start:.1f} s; mean "
            f"{np.round(data.info.mean, 3).tolist()}, std {np.round(data.info.std, 3).tolist()}",
            flush=True,
        )
        results: dict[str, list[dict]] = {"a_loop": [], "b_neurotrainer": []}
        for r in range(opts.rounds):
            results["a_loop"].append(run_loop(task, data, config, images, masks, opts))
            results["b_neurotrainer"].append(run_neurotrainer(task, data, config, opts))
            a, b = results["a_loop"][-1], results["b_neurotrainer"][-1]
            print(
                f"round {r + 1}: a_loop {a['rate']:.2f} samples/s (wait {share(a['wait'], a['wall'])}), "
                f"b_neurotrainer {b['rate']:.2f} samples/s (wait {share(b['wait'], b['wall'])}, "
                f"loader alone {share(b['alone'], b['wall'])}), b/a {b['rate'] / a['rate']:.3f}",
                flush=True,
            )

    aug = config.augmentation
    print(
        f"\nmodel unet {dict(config.model.kwargs)}, loss {LOSS}, batch {opts.batch_size}, {opts.images} images of "
        f"{opts.image_size} px -> {opts.patch} px patches (foreground_ratio {aug.foreground_ratio}, flips "
        f"{aug.horizontal_flip}/{aug.vertical_flip}, rotation {aug.rotation}, color_jitter {aug.color_jitter}, "
        f"gamma {aug.gamma}), {opts.workers} workers, {opts.steps} timed steps after {opts.warmup}, "
        f"device {device()}, torch threads {torch.get_num_threads()}"
    )
    med = {k: statistics.median(r["rate"] for r in v) for k, v in results.items()}
    for k, v in results.items():
        runs = ", ".join(f"{r['rate']:.2f}" for r in v)
        print(f"{k:16s} median {med[k]:8.2f} samples/s   runs: {runs}")
    paired = statistics.median(
        b["rate"] / a["rate"] for a, b in zip(results["a_loop"], results["b_neurotrainer"])
    )
    ratio = med["b_neurotrainer"] / med["a_loop"]
    print(
        f"ratio b/a = {ratio:.3f} (of medians), {paired:.3f} (median of per-round)   (target >= {TARGET}x: "
        f"{'met' if paired >= TARGET else 'NOT met'})"
    )
    b_runs = results["b_neurotrainer"]
    wait = statistics.median(r["wait"] / r["wall"] for r in b_runs)
    alone = statistics.median(r["alone"] / r["wall"] for r in b_runs)
    loop_wait = statistics.median(r["wait"] / r["wall"] for r in results["a_loop"])
    print(
        f"data-loading share of b (median): wait {100 * wait:.1f}% of the timed wall time, loader alone "
        f"{100 * alone:.1f}%; a's wait {100 * loop_wait:.1f}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

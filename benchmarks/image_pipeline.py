"""Training steps/s on JPEG image folders: torchvision ImageFolder + hand loop vs NeuroTrainer (config path).

Data: ~2,000 JPEG files of 256x256 RGB (quality 90, textured random content so decoding costs what a
photo's does) in an ImageFolder layout ``<data-dir>/images/train/<class>/*.jpg``, 10 classes; generated
once and reused (``--data-dir``, default a folder under the system temp dir).

  (a) torchvision ``ImageFolder`` + ``DataLoader`` with ``v2.Compose([Resize(256), RandomCrop(224),
      RandomHorizontalFlip(), ToImage(), ToDtype(float32, scale=True), Normalize(mean, std)])`` and a
      hand-written loop (fused AdamW, cross-entropy, gradient clipping, linear schedule);
  (b) ClassificationTrainer (NeuroTrainer) from a neurotrain config: ``[dataset] name = "imagefolder"``,
      ``[augmentation] resize = 256, random_crop = 224, horizontal_flip = 0.5``.
Same model (``simple_cnn`` with channels 8, 16, built by ``neurotrain_hf.models.get_model`` for both),
batch size (64), learning rate, ``dataloader_num_workers`` (2), device and normalisation (the mean/std
neurotrain computes from the training images). NeuroTrainer's first build (the image scan, cached by
``datasets``, and the mean/std pass) is done once, outside the timed region; each round then builds a
fresh model and trainer from the prepared data. Steps/s is timed over ``--steps`` optimizer steps after
``--warmup`` steps (loader start-up included in the warm-up); evaluation, saving and logging are off.
Rounds alternate (a, b, a, b, ...); per-round figures, medians and the ratio b/a (target >= 1.0x) are
printed, the ratio also as the median of per-round ratios (runs made back to back).

    .venv/bin/python benchmarks/image_pipeline.py [--steps 30] [--warmup 5] [--rounds 3] [--workers 2]
    .venv/bin/python benchmarks/image_pipeline.py --quick    # 200 images of 64x64, a few steps
"""

from __future__ import annotations

import argparse
import json
import logging
import math
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
from timing import StepTimer, device, sync  # noqa: E402
from transformers import PrinterCallback, get_scheduler, set_seed  # noqa: E402

from neurotrain_hf.config import build_config  # noqa: E402
from neurotrain_hf.models import get_model  # noqa: E402
from neurotrain_hf.runner import build  # noqa: E402

CLASSES = 10
MODEL = "simple_cnn"
MODEL_KWARGS = {"channels": [8, 16], "dropout": 0.0}
LEARNING_RATE = 1e-3
MAX_GRAD_NORM = 1.0
QUICK = {
    "images": 200,
    "image_size": 64,
    "resize": 64,
    "crop": 56,
    "batch_size": 16,
    "steps": 4,
    "warmup": 2,
    "rounds": 1,
}


# --- data -----------------------------------------------------------------------------------------------
def textured_image(rng: np.random.Generator, size: int, label: int):
    """Smooth colour blobs, class-dependent stripes and pixel noise: JPEG-realistic detail."""
    from PIL import Image

    coarse = Image.fromarray(rng.integers(0, 256, (size // 16 + 2, size // 16 + 2, 3), dtype=np.uint8))
    blobs = np.asarray(coarse.resize((size, size), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = math.pi * (label / CLASSES + rng.uniform(-0.05, 0.05))
    freq = rng.uniform(4, 24)
    stripes = 40.0 * np.sin(2 * math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)))
    noise = rng.normal(0.0, 10.0, (size, size, 3)).astype(np.float32)
    pixels = np.clip(0.7 * blobs + stripes[..., None] + noise + 30.0, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def ensure_images(data_dir: Path, count: int, size: int) -> Path:
    """``data_dir/images/train/<class>/*.jpg``, generated once (a marker records what is there)."""
    root = data_dir / "images"
    marker = data_dir / "generated.json"
    want = {"count": count, "size": size, "classes": CLASSES, "quality": 90, "version": 1}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return root
    if root.exists():
        raise SystemExit(f"{root} exists but was not generated with {want}; choose another --data-dir")
    print(f"generating {count} JPEG images of {size}x{size} under {root} ...", flush=True)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for i in range(count):
        label = i % CLASSES
        folder = root / "train" / f"class_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        textured_image(rng, size, label).save(folder / f"{i:05d}.jpg", quality=90)
    marker.write_text(json.dumps(want))
    total = sum(p.stat().st_size for p in root.rglob("*.jpg"))
    print(
        f"  done in {time.perf_counter() - start:.1f} s, {total / count / 1024:.1f} KiB per file", flush=True
    )
    return root


# --- shared pieces --------------------------------------------------------------------------------------
def new_model(seed: int):
    set_seed(seed)
    return get_model(MODEL, {"kwargs": MODEL_KWARGS}, num_labels=CLASSES, in_channels=3)


# --- (a) torchvision ImageFolder + hand loop ------------------------------------------------------------
def run_torchvision(root: Path, opts, mean, std) -> float:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.Resize(opts.resize),
            v2.RandomCrop(opts.crop),
            v2.RandomHorizontalFlip(),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )
    dev = device()
    loader = torch.utils.data.DataLoader(
        ImageFolder(str(root / "train"), transform=transform),
        batch_size=opts.batch_size,
        shuffle=True,
        num_workers=opts.workers,
        pin_memory=dev.type == "cuda",
    )
    model = new_model(opts.seed).to(dev).train()
    # As the Trainer's defaults: fused AdamW (weight decay 0, eps 1e-8), linear schedule, clipping at 1.0.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=LEARNING_RATE, eps=1e-8, weight_decay=0.0, fused=True
    )
    total = opts.warmup + opts.steps
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=total)
    step, t0 = 0, None
    while step < total:
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(pixel_values=x).logits, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == opts.warmup:
                sync()
                t0 = time.perf_counter()
            if step >= total:
                break
    sync()
    return opts.steps / (time.perf_counter() - t0)


# --- (b) NeuroTrainer through the config path -----------------------------------------------------------
def neuro_config(root: Path, cache: Path, out: str, opts):
    return build_config(
        {
            "basic": {
                "task": "classification",
                "run_id": "image_pipeline",
                "seed": opts.seed,
                "output_dir": out,
            },
            "model": {"name": MODEL, "kwargs": MODEL_KWARGS},
            "dataset": {
                "name": "imagefolder",
                "root": str(root),
                "cache_dir": str(cache),
                "valid_ratio": 0.0,
                "test_ratio": 0.0,
            },
            "augmentation": {"resize": opts.resize, "random_crop": opts.crop, "horizontal_flip": 0.5},
            "training": {
                "batch_size": opts.batch_size,
                "max_steps": opts.warmup + opts.steps,
                "learning_rate": LEARNING_RATE,
                "max_grad_norm": MAX_GRAD_NORM,
                "dataloader_num_workers": opts.workers,
                "eval_strategy": "no",
                "save_strategy": "no",
                "logging_strategy": "no",
                "metrics": [],
                "plots": False,
                "monitor_resources": False,
                "report_to": "none",
                "disable_tqdm": True,
            },
        },
        source="image_pipeline",
    )


def run_neurotrainer(task, data, config, opts) -> float:
    timer = StepTimer(opts.warmup)
    set_seed(opts.seed)
    trainer = task.build_trainer(config, task.build_model(config, data), data, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return timer.rate()


# --- main -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="where the JPEG folder is generated")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="dataloader_num_workers of both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 images of 64x64, a few steps")
    if parser.parse_known_args(argv)[0].quick:  # smaller defaults; options given explicitly still win
        parser.set_defaults(**QUICK)
    opts = parser.parse_args(argv)
    if opts.warmup < 1 or opts.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    logging.getLogger("neurotrain_hf").setLevel(logging.WARNING)
    datasets.disable_progress_bars()
    data_dir = opts.data_dir or Path(tempfile.gettempdir()) / (
        f"neurotrain-image-pipeline-{opts.images}x{opts.image_size}"
    )
    root = ensure_images(data_dir, opts.images, opts.image_size)

    with tempfile.TemporaryDirectory() as out:
        config = neuro_config(root, data_dir / "hf_cache", out, opts)
        start = time.perf_counter()
        task, data, _ = build(config)  # scans every image once (cached) and computes mean/std: untimed
        print(
            f"neurotrain build (scan + mean/std) {time.perf_counter() - start:.1f} s; "
            f"{len(data.splits['train'])} training images, mean {np.round(data.info.mean, 3).tolist()}, "
            f"std {np.round(data.info.std, 3).tolist()}",
            flush=True,
        )
        mean, std = data.info.mean, data.info.std
        results: dict[str, list[float]] = {"a_torchvision": [], "b_neurotrainer": []}
        for r in range(opts.rounds):
            results["a_torchvision"].append(run_torchvision(root, opts, mean, std))
            results["b_neurotrainer"].append(run_neurotrainer(task, data, config, opts))
            print(
                f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} steps/s" for k, v in results.items()),
                flush=True,
            )

    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"\nmodel {MODEL} {MODEL_KWARGS}, batch {opts.batch_size}, {opts.images} JPEGs of "
        f"{opts.image_size}^2 -> resize {opts.resize}, crop {opts.crop}, {opts.workers} workers, "
        f"{opts.steps} timed steps after {opts.warmup}, device {device()}, "
        f"torch threads {torch.get_num_threads()}"
    )
    for k, v in med.items():
        print(f"{k:16s} median {v:8.2f} steps/s   runs: {', '.join(f'{s:.2f}' for s in results[k])}")
    paired = statistics.median(b / a for a, b in zip(results["a_torchvision"], results["b_neurotrainer"]))
    print(
        f"ratio b/a = {med['b_neurotrainer'] / med['a_torchvision']:.3f} (of medians), {paired:.3f} "
        "(median of per-round)   (target >= 1.0x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

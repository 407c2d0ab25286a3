"""Streaming vs map-style training on the same parquet shards: images/s, and peak memory against corpus size.

Data: ``--rows`` 32x32 RGB PNG images (textured random content, 10 classes) written as 8 parquet train
shards in the ``neurotrain to-parquet`` layout (``data/train-0000K-of-00008.parquet`` + valid/test), once
per corpus size, under a temp folder. Both modes train ``simple_cnn`` (channels 8, 16) from the same
config, batch 64, random crop + flip, one process, evaluation and saving off; only ``[dataset]
streaming`` differs (map-style: ``datasets`` Arrow cache + batch fetches; streaming: the shards read as a
stream, shuffle buffer 1000). Images/s is timed over ``--steps`` optimizer steps after ``--warmup``;
rounds alternate (map, stream, map, ...) and the ratio stream/map is the median of per-round ratios.

Memory: each mode trains ``--steps`` steps in a fresh subprocess on the 1x and on the 4x corpus; the
peak RSS (``VmHWM``) of each is printed with the 4x/1x ratio (flat means ~1.0x), and the bytes each wrote
to its own ``datasets`` cache (map-style converts the shards to Arrow files first; streaming writes none).

    .venv/bin/python benchmarks/streaming.py [--rows 4000] [--steps 40] [--warmup 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NEUROTRAIN_LOG_LEVEL", "WARNING")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARDS, BATCH = 8, 64


def write_corpus(root: Path, rows: int) -> Path:
    """``rows`` training images in ``SHARDS`` shards, plus 200-row valid and test shards (reused)."""
    import datasets
    import numpy as np
    from PIL import Image

    if (root / "data").is_dir():
        return root
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )
    rng = np.random.default_rng(0)
    (root / "data").mkdir(parents=True)
    parts = [("train", k, SHARDS, rows // SHARDS) for k in range(SHARDS)] + [
        ("valid", 0, 1, 200),
        ("test", 0, 1, 200),
    ]
    for split, k, count, n in parts:
        table = []
        for _ in range(n):
            label = int(rng.integers(10))
            pixels = (rng.random((32, 32, 3)) * 128 + label * 12).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            table.append({"image": {"bytes": buffer.getvalue(), "path": None}, "label": label})
        path = root / "data" / f"{split}-{k:05d}-of-{count:05d}.parquet"
        datasets.Dataset.from_list(table, features=features).to_parquet(str(path))
    return root


def config(root: Path, out: Path, streaming: bool, steps: int):
    from neurotrain_hf.config import build_config

    run_id = "stream" if streaming else "map"
    return build_config(
        {
            "basic": {"task": "classification", "run_id": run_id, "output_dir": str(out), "database": "none"},
            "model": {"name": "simple_cnn", "kwargs": {"channels": [8, 16]}},
            "dataset": {
                "name": "parquet",
                "root": str(root),
                "streaming": streaming,
                "cache_dir": str(out / "cache"),
            },
            "augmentation": {"random_crop": 28, "horizontal_flip": 0.5},
            "training": {
                "max_steps": steps,
                "batch_size": BATCH,
                "eval_strategy": "no",
                "save_strategy": "no",
                "logging_steps": 1000,
                "report_to": "none",
                "disable_tqdm": True,
                "plots": False,
                "metrics": [],
            },
            "testing": {"run_after_training": False},
        },
        source="benchmark",
    )


def images_per_second(root: Path, out: Path, streaming: bool, steps: int, warmup: int) -> float:
    from benchmarks.timing import StepTimer
    from neurotrain_hf.runner import build

    timer = StepTimer(warmup)
    _, _, trainer = build(config(root, out, streaming, warmup + steps), callbacks=[timer])
    trainer.train()
    return timer.rate() * BATCH


def peak_memory(root: Path, streaming: bool, steps: int) -> tuple[float, float]:
    """(MiB of peak RSS, MiB written to the ``datasets`` cache) of a fresh process training ``steps`` steps.

    The peak is ``VmHWM`` (``getrusage``'s ``ru_maxrss`` keeps the forking parent's peak across exec)."""
    out = root.parent / f"memory-{root.name}-{'stream' if streaming else 'map'}"
    shutil.rmtree(out, ignore_errors=True)
    code = (
        "from pathlib import Path; import benchmarks.streaming as b; "
        f"b.images_per_second(Path({str(root)!r}), Path({str(out)!r}), {streaming}, {steps}, 1); "
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=os.environ, check=True
    )
    cache = sum(f.stat().st_size for f in (out / "cache").rglob("*") if f.is_file())
    return int(done.stdout.strip().splitlines()[-1]) / 1024, cache / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.gettempdir()) / "neurotrain-bench-streaming"
    small = write_corpus(base / f"rows{args.rows}", args.rows)
    big = write_corpus(base / f"rows{4 * args.rows}", 4 * args.rows)
    rates = {"map": [], "stream": []}
    for _ in range(args.rounds):
        for mode in ("map", "stream"):
            rates[mode].append(
                images_per_second(small, base / "runs", mode == "stream", args.steps, args.warmup)
            )
    ratios = [s / m for s, m in zip(rates["stream"], rates["map"])]
    memory = {
        mode: {
            size: peak_memory(root, mode == "stream", args.steps)
            for size, root in (("1x", small), ("4x", big))
        }
        for mode in ("map", "stream")
    }
    result = {
        "images_per_s": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "median_images_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        "stream_over_map": round(statistics.median(ratios), 3),
        "peak_rss_mib": {k: {s: round(v[0], 1) for s, v in m.items()} for k, m in memory.items()},
        "rss_4x_over_1x": {k: round(m["4x"][0] / m["1x"][0], 3) for k, m in memory.items()},
        "datasets_cache_mib": {k: {s: round(v[1], 1) for s, v in m.items()} for k, m in memory.items()},
        "rows": {"1x": args.rows, "4x": 4 * args.rows},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

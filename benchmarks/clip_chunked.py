"""Gradient caching (``[training] contrastive_chunk``) against the plain CLIP step at the same global batch.

The default CLIP recipe (``recipes/configs/clip_synthetic.toml``) at ``--batch-size`` pairs per step on one
process, trained ``--steps`` optimizer steps with chunking off and with each ``--chunks`` value, each in a
fresh process (peak memory is per process): pairs/s and the peak resident memory the training added
above the process's peak once the model and data were built (``ru_maxrss``), side by side in one run.

    .venv/bin/python benchmarks/clip_chunked.py [--batch-size 512] [--chunks 128 32] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "clip_synthetic.toml"


def one(batch: int, chunk: int, steps: int) -> dict:
    """Train in this process; returns pairs/s and the peak memory added by training (MB)."""
    os.environ.setdefault("NEUROTRAIN_LOG_LEVEL", "WARNING")
    import tempfile

    from neurotrain_hf.config import load_config
    from neurotrain_hf.runner import build

    overrides = {
        "training.batch_size": batch,
        "training.contrastive_chunk": chunk,
        "training.max_steps": steps,
        "training.eval_strategy": "no",
        "training.save_strategy": "no",
        "training.disable_tqdm": "true",
        "training.logging_steps": steps,
        "basic.output_dir": tempfile.mkdtemp(prefix="clip-chunked-"),
    }
    config = load_config(RECIPE, [f"--{k}={v}" for k, v in overrides.items()])
    _, _, trainer = build(config)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    began = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"chunk": chunk, "pairs_per_s": batch * steps / seconds, "added_peak_mb": peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--chunks", type=int, nargs="+", default=[128, 32])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.batch_size, args.one, args.steps)))
        return
    rows = []
    for chunk in [0, *args.chunks]:
        command = [sys.executable, __file__, "--one", str(chunk), "--batch-size", str(args.batch_size)]
        done = subprocess.run(
            [*command, "--steps", str(args.steps)], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"global batch {args.batch_size}, {args.steps} steps, 1 process")
    print(f"{'chunk':>8}{'pairs/s':>10}{'speed':>8}{'peak MB added':>15}{'memory':>8}")
    for row in rows:
        label = "off" if row["chunk"] == 0 else str(row["chunk"])
        speed = row["pairs_per_s"] / base["pairs_per_s"]
        memory = row["added_peak_mb"] / base["added_peak_mb"] if base["added_peak_mb"] else float("nan")
        print(
            f"{label:>8}{row['pairs_per_s']:>10.1f}{speed:>7.2f}x{row['added_peak_mb']:>15.0f}{memory:>7.2f}x"
        )


if __name__ == "__main__":
    main()

"""Tiny diffusion runs (16 px, 2 steps) for tests that need a saved pipeline folder, not a good model."""

from __future__ import annotations

from pathlib import Path

STEPS = 4  # sampling steps saved with the tiny models


def tiny(tmp: Path, run_id: str, conditioning: str, dataset: str, **training) -> Path:
    """Train a 2-step run of the given conditioning on an embedded dataset; returns the run folder."""
    from .tiny_runs import train

    return train(
        {
            "basic": {"task": "diffusion", "run_id": run_id, "seed": 0, "output_dir": str(tmp / "runs")},
            "model": {"name": "unet2d", "kwargs": {"block_out_channels": [8, 16], "attention_levels": [1]}},
            "dataset": {"name": dataset, "image_size": 16, "num_samples": 32},
            "training": {
                "conditioning": conditioning,
                "max_steps": 2,
                "batch_size": 8,
                "learning_rate": 1e-2,
                "ema_decay": 0.9,
                "sampling_steps": STEPS,
                **training,
            },
        }
    )

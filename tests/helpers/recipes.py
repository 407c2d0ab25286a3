"""Test helper: a shipped recipe and config on a shortened schedule (the command a user types, fewer steps)."""

from __future__ import annotations

from pathlib import Path


def shortened(recipe: str, config: str, tmp_path: Path, steps: int, *extra: str) -> list[str]:
    """``recipe config`` writing under ``tmp_path``, ``steps`` optimizer steps, evaluated and saved at the end."""
    every = str(steps)
    return [
        recipe,
        config,
        "--basic.output_dir",
        str(tmp_path / "runs"),
        "--training.max_steps",
        every,
        "--training.eval_steps",
        every,
        "--training.save_steps",
        every,
        "--training.disable_tqdm",
        "true",
        *extra,
    ]

"""A LLaVA conversation json (official layout: ``image`` relative to the folder, ``conversations`` with
``from``/``value``) whose answers differ widely in length: 1 to 14 words, one or two assistant turns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

WORDS = [
    "red",
    "green",
    "blue",
    "yellow",
    "circle",
    "square",
    "triangle",
    "cross",
    "small",
    "large",
    "top",
    "bottom",
    "left",
    "right",
    "shape",
]


def write_conversations(root: Path, count: int = 16, seed: int = 0) -> Path:
    """``root/conversations.json`` and ``root/images/*.png``; returns ``root``."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        length = 1 + (i * 13) % 14  # 1 .. 14 words
        answer = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(length))
        turns = [
            {"from": "human", "value": "<image>\nwhat is in the image?"},
            {"from": "gpt", "value": answer},
        ]
        if i % 3 == 0:
            turns += [{"from": "human", "value": "and the colour?"}, {"from": "gpt", "value": WORDS[i % 4]}]
        items.append({"id": f"c{i}", "image": f"images/{i}.png", "conversations": turns})
    (root / "conversations.json").write_text(json.dumps(items), encoding="utf-8")
    return root


def config(root: Path, out: Path, run_id: str, **training) -> dict:
    """A deterministic tiny run on the conversations: SGD (AdamW would hide a wrong loss scale), no
    dropout, no evaluation."""
    return {
        "basic": {"task": "vlm", "run_id": run_id, "seed": 0, "output_dir": str(out)},
        "model": {
            "name": "llava_tiny",
            "kwargs": {"text": {"num_hidden_layers": 1}, "vision": {"num_hidden_layers": 1}},
        },
        "dataset": {"name": "llava_json", "root": str(root), "valid_ratio": 0.0, "test_ratio": 0.0},
        "training": {
            "max_steps": 3,
            "optim": "sgd",
            "learning_rate": 0.5,
            "train_vision_tower": True,
            "max_length": 64,
            "eval_strategy": "no",
            "save_strategy": "no",
            "metrics": [],
            "report_to": "none",
            "disable_tqdm": True,
            **training,
        },
        "testing": {"run_after_training": False},
    }

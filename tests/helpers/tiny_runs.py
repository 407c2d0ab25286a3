"""Tiny trained runs of every built-in task, shared by the tests that need a model folder but not a good
model (demos, pipelines): a few steps, no evaluation, no test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def train(data: dict) -> Path:
    """Run a config dict for its few steps without evaluation; returns the run folder."""
    from neurotrain_hf.config import build_config
    from neurotrain_hf.runner import run

    data["testing"] = {"run_after_training": False}
    data["training"].update(
        {"eval_strategy": "no", "save_strategy": "no", "report_to": "none", "disable_tqdm": True}
    )
    run(build_config(data))
    basic = data["basic"]
    return Path(basic["output_dir"]) / basic["task"] / basic["run_id"]


def config(task: str, root: Path) -> dict:
    """The tiny config of one task."""
    basic = {"task": task, "run_id": task[:4], "seed": 0, "output_dir": str(root / "runs")}
    if task == "classification":
        return {
            "basic": basic,
            "model": {"name": "simple_cnn", "kwargs": {"channels": [8, 16], "dropout": 0.0}},
            "dataset": {"name": "digits", "max_samples": 128},
            "training": {"num_train_epochs": 1, "batch_size": 32, "learning_rate": 3e-3},
        }
    if task == "segmentation":
        return {
            "basic": basic,
            "model": {"name": "unet", "kwargs": {"depth": 2, "base_channels": 8}},
            "dataset": {"name": "synthetic_retina", "max_samples": 8},
            "training": {"max_steps": 3, "batch_size": 4},
        }
    if task == "clip":
        return {
            "basic": basic,
            "model": {"name": "clip_tiny"},
            "dataset": {"name": "synthetic_shapes", "max_samples": 64},
            "training": {
                "max_steps": 3,
                "batch_size": 16,
                "zero_shot_templates": ["a {}", "a picture of a {}"],
            },
        }
    if task == "vlm":
        return {
            "basic": basic,
            "model": {
                "name": "llava_tiny",
                "kwargs": {"text": {"num_hidden_layers": 1}, "vision": {"num_hidden_layers": 1}},
            },
            "dataset": {"name": "synthetic_vqa", "num_images": 16, "held_out_images": 4},
            "training": {
                "max_steps": 3,
                "batch_size": 8,
                "max_length": 48,
                "max_new_tokens": 4,
                "train_vision_tower": True,
            },
        }
    return {  # detection: Faster R-CNN at the recipe's small-image settings
        "basic": basic,
        "model": {
            "name": "fasterrcnn",
            "kwargs": {"backbone": "resnet18", "fpn_channels": 32, "representation_size": 64},
        },
        "dataset": {"name": "synthetic_shapes_detection", "max_samples": 16},
        "augmentation": {"image_size": 96},
        "training": {"max_steps": 3, "batch_size": 4},
    }


def sample_images(folder: Path) -> dict[str, Path]:
    """Example inputs: a retina (RGB), digits (grey 8-bit and 16-bit), shapes, detection shapes, bad files."""
    from sklearn.datasets import load_digits

    from neurotrain_hf.tasks.clip.synthetic import combinations, render
    from neurotrain_hf.tasks.segmentation.synthetic import synthetic_retina

    files = {}
    files["retina"] = folder / "retina.png"
    Image.fromarray(synthetic_retina(3, 64)[0]).save(files["retina"])
    files["retina_odd"] = folder / "retina_odd.png"  # not a multiple of the U-Net's pooling factor
    Image.fromarray(synthetic_retina(4, 64)[0][:61, :57]).save(files["retina_odd"])
    digit = load_digits().images[5]
    files["digit"] = folder / "digit.png"
    Image.fromarray((digit * 255 / 16).astype(np.uint8)).save(files["digit"])
    files["digit16"] = folder / "digit16.png"
    Image.fromarray((digit * 65535 / 16).astype(np.uint16)).save(files["digit16"])
    rng = np.random.default_rng(0)
    for i, combo in enumerate(combinations()[::9][:5]):
        files[f"shape{i}"] = folder / f"shape{i}.png"
        Image.fromarray(render(combo, 32, rng)).save(files[f"shape{i}"])
    files["corrupt"] = folder / "corrupt.png"
    files["corrupt"].write_bytes(Image.open(files["retina"]).tobytes()[:500])  # pixels, no header
    files["truncated"] = folder / "truncated.png"
    files["truncated"].write_bytes(files["retina"].read_bytes()[:300])
    files["huge"] = folder / "huge.png"  # 5000 px wide, a few hundred bytes
    Image.new("L", (5000, 2)).save(files["huge"])
    files["icon"] = folder / "icon.ico"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(files["icon"])
    return files

"""``mask_dice``: the Dice between each conditioning mask and a segmentation run's prediction on the image
generated from it, equal to MONAI's DiceMetric recomputed from the saved test samples."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch
from PIL import Image

from tests.conftest import ROOT  # noqa: F401  (offline environment)


def test_mask_dice_equals_monai_on_the_saved_samples(tmp_path):
    from monai.metrics import DiceMetric

    from neurotrain_hf import Predictor
    from neurotrain_hf.config import build_config
    from neurotrain_hf.runner import run
    from neurotrain_hf.tasks.diffusion.synthetic import vessel_patches, write_pair_folders
    from tests.helpers.tiny_runs import train

    folders = write_pair_folders(tmp_path / "vessels", {"train": 16, "valid": 8, "test": 8}, size=16)
    segmenter = train(
        {
            "basic": {
                "task": "segmentation",
                "run_id": "seg",
                "seed": 0,
                "output_dir": str(tmp_path / "runs"),
            },
            "model": {"name": "unet", "kwargs": {"depth": 2, "base_channels": 8}},
            "dataset": {"name": "segmentation_folder", "root": str(folders)},
            "training": {"max_steps": 3, "batch_size": 8, "learning_rate": 1e-2},
        }
    )
    config = {
        "basic": {"task": "diffusion", "run_id": "mask", "seed": 0, "output_dir": str(tmp_path / "runs")},
        "model": {"name": "unet2d", "kwargs": {"block_out_channels": [8, 16], "attention_levels": []}},
        "dataset": {"name": "vessel_patches", "image_size": 16, "num_samples": 16, "max_samples": 8},
        "training": {
            "conditioning": "mask",
            "max_steps": 2,
            "batch_size": 8,
            "sampling_steps": 3,
            "segmenter": str(segmenter),
            "eval_strategy": "no",
            "save_strategy": "no",
            "disable_tqdm": True,
            "report_to": "none",
        },
    }
    report = run(build_config(config))
    ours = report["test"]["mask_dice"]
    run_dir = tmp_path / "runs" / "diffusion" / "mask"
    with open(run_dir / "test_per_sample.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    _, test_masks = vessel_patches(8, seed=2, size=16)  # the source's test split (seed * 1000 + 2)
    images = [np.asarray(Image.open(run_dir / row["image"])) for row in rows]
    predicted = np.stack([r["mask"] > 0 for r in Predictor.from_pretrained(segmenter).predict(images)])
    wanted = np.stack([test_masks[int(row["index"])] > 0 for row in rows])
    metric = DiceMetric(include_background=True, reduction="mean", ignore_empty=False)
    metric(torch.from_numpy(predicted[:, None]).float(), torch.from_numpy(wanted[:, None]).float())
    assert abs(ours - float(metric.aggregate())) < 1e-6, (ours, float(metric.aggregate()))
    assert json.loads((run_dir / "test_metrics.json").read_text())["mask_dice"] == ours

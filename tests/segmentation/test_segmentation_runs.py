"""Segmentation on several processes and across a crash: same metrics, same weights."""

import json

import pytest
import torch
from safetensors.torch import load_file

from neurotrain_hf.config import build_config
from neurotrain_hf.runner import build

from ..conftest import run_python, write_toml
from ..test_distributed import accelerate_launch


def seg_dict(tmp_path, run_id, **training):
    return {
        "basic": {"task": "segmentation", "run_id": run_id, "seed": 0, "output_dir": str(tmp_path / "runs")},
        "model": {"name": "unet", "kwargs": {"depth": 3, "base_channels": 8, "dropout": 0.2}},
        "dataset": {"name": "synthetic_retina", "max_samples": 16},
        "training": {
            "num_train_epochs": 2,
            "batch_size": 4,
            "per_device_eval_batch_size": 3,
            "logging_steps": 1,
            "disable_tqdm": True,
            "report_to": "none",
            **training,
        },
        "augmentation": {
            "random_crop": 48,
            "foreground_ratio": 0.5,
            "horizontal_flip": 0.5,
            "rotation": 15.0,
        },
    }


@pytest.mark.slow
def test_two_process_segmentation_evaluation_equals_one_process(tmp_path):
    data = seg_dict(tmp_path, "eval")
    cfg = write_toml(tmp_path / "eval.toml", data)
    proc = accelerate_launch(2, "tests/helpers/ddp_train.py", "--eval-only", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = tmp_path / "runs" / "segmentation" / "eval" / "ranks"
    two = json.loads((ranks / "eval_rank0.json").read_text())
    assert two["world_size"] == 2
    _, prepared, trainer = build(build_config(data))
    one = trainer.evaluate()
    assert len(prepared.splits["valid"]) % 6 != 0  # padded last round on 2 ranks x 3
    for key in ("eval_f1", "eval_accuracy", "eval_sensitivity", "eval_mcc", "eval_num_samples"):
        assert two["metrics"][key] == one[key], key  # from counts: exactly equal
    for key in ("eval_auc", "eval_mean_dice", "eval_mean_iou"):  # sums of per-image floats
        assert two["metrics"][key] == pytest.approx(one[key], rel=1e-12), key
    assert two["metrics"]["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-5)


@pytest.mark.slow
def test_segmentation_resume_is_bit_exact_with_augmentation(tmp_path):
    def config(run_id):
        training = {"eval_strategy": "no", "save_strategy": "steps", "save_steps": 3, "num_train_epochs": 3}
        data = seg_dict(tmp_path, run_id, **training)
        data["testing"] = {"run_after_training": False}
        return write_toml(tmp_path / f"{run_id}.toml", data)

    straight, killed = config("straight"), config("killed")
    assert run_python(["tests/helpers/train_until.py", str(straight)]).returncode == 0
    proc = run_python(["tests/helpers/train_until.py", str(killed), "--kill-at-step", "5"])
    assert proc.returncode == -9
    proc = run_python(
        ["tests/helpers/train_until.py", str(killed), "--training.resume_from_checkpoint", "last"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    root = tmp_path / "runs" / "segmentation"
    a = load_file(str(root / "straight" / "model" / "model.safetensors"))
    b = load_file(str(root / "killed" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

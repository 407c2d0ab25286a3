"""CLIP under DeepSpeed on 2 CPU processes: ZeRO-2 ends with DDP's weights; LoRA under ZeRO-3 saves the
full adapter (and its base, gathered from the shards)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ..conftest import write_toml
from ..helpers.launch import accelerate_launch
from .test_clip_runs import short_clip

pytestmark = pytest.mark.requires("deepspeed", "g++")


def launch(config_file: str, cfg, run_id: str):
    proc = accelerate_launch(
        None, "recipes/train_clip.py", str(cfg), "--basic.run_id", run_id, config_file=config_file
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def small(tmp_path, **training):
    data = short_clip(tmp_path)
    data["dataset"]["max_samples"] = 400
    data["training"].update(
        max_steps=6, batch_size=16, eval_strategy="no", save_strategy="no", optim="sgd", learning_rate=0.05
    )
    data["training"].update(training)
    return data


@pytest.mark.slow
def test_zero2_ends_with_the_weights_of_ddp(tmp_path):
    cfg = write_toml(tmp_path / "clip.toml", small(tmp_path))
    launch("ddp", cfg, "ddp")
    launch("zero2", cfg, "zero2")
    runs = tmp_path / "runs/clip"
    ddp, zero2 = (load_file(str(runs / r / "model/model.safetensors")) for r in ("ddp", "zero2"))
    assert ddp.keys() == zero2.keys() and ddp["logit_scale"].shape == torch.Size([])
    assert max(float((ddp[k] - zero2[k]).abs().max()) for k in ddp) < 1e-5
    initial = json.loads((runs / "zero2/report.json").read_text())
    assert initial["world_size"] == 2 and initial["global_step"] == 6


@pytest.mark.slow
def test_lora_under_zero3_saves_the_full_adapter(tmp_path):
    data = small(tmp_path, optim="adamw_torch", learning_rate=0.01)
    data["peft"] = {"r": 4, "alpha": 8}
    cfg = write_toml(tmp_path / "lora.toml", data)
    launch("zero3", cfg, "z3")
    run_dir = tmp_path / "runs/clip/z3"
    adapter = load_file(str(run_dir / "adapter/adapter_model.safetensors"))
    layers = 3 * 2 * 2 * 2  # layers x towers x (q, v) x (A, B)
    assert len(adapter) == layers and all(v.numel() and v.shape[0] in (4, 64) for v in adapter.values())
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in adapter.items())  # trained
    base = load_file(str(run_dir / "base_model/model.safetensors"))
    assert all(v.numel() for v in base.values())  # gathered from the shards, not empty partitions
    from peft import PeftModel
    from transformers import CLIPModel

    from neurotrain_hf.tasks import get_task

    task = get_task("clip").load()
    reloaded = PeftModel.from_pretrained(
        CLIPModel.from_pretrained(run_dir / "base_model"), run_dir / "adapter"
    )
    merged = CLIPModel.from_pretrained(run_dir / "model")
    probe = task.probe_inputs(merged)
    with torch.no_grad():
        for a, b in zip(task.probe_outputs(reloaded.eval(), probe), task.probe_outputs(merged.eval(), probe)):
            assert torch.allclose(a, b, atol=1e-5)
    assert json.loads((run_dir / "report.json").read_text())["world_size"] == 2

"""EMA done right: stepped once per optimizer step (not per micro-step) with diffusers' warm-up decay,
equal to the recursion written out by hand; saved in checkpoints and restored bit for bit on resume; the
saved pipeline's ``unet/`` holds the EMA weights and ``unet_raw/`` the trained ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from tests.conftest import ROOT  # noqa: F401  (offline environment)

DECAY, INV_GAMMA, POWER = 0.9, 1.0, 0.75


def config(tmp_path: Path, run_id: str, **training) -> dict:
    return {
        "basic": {"task": "diffusion", "run_id": run_id, "seed": 0, "output_dir": str(tmp_path / "runs")},
        "model": {"name": "unet2d", "kwargs": {"block_out_channels": [8, 16], "attention_levels": []}},
        "dataset": {"name": "color_shapes", "image_size": 16, "num_samples": 64, "max_samples": 32},
        "training": {
            "conditioning": "class",
            "max_steps": 4,
            "batch_size": 8,
            "gradient_accumulation_steps": 2,
            "learning_rate": 1e-2,
            "ema_decay": DECAY,
            "ema_inv_gamma": INV_GAMMA,
            "ema_power": POWER,
            "eval_strategy": "no",
            "save_strategy": "steps",
            "save_steps": 2,
            "save_total_limit": 3,
            "disable_tqdm": True,
            "report_to": "none",
            **training,
        },
        "testing": {"run_after_training": False},
    }


class RawWeights(TrainerCallback):
    """The trained (raw) UNet weights after every optimizer step, and the micro-steps seen."""

    def __init__(self) -> None:
        self.model, self.after_step, self.micro_steps = None, [], 0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = model
        self.initial = {k: v.detach().clone() for k, v in model.unet.state_dict().items()}

    def on_substep_end(self, args, state, control, **kwargs):
        self.micro_steps += 1

    def on_step_end(self, args, state, control, **kwargs):
        self.micro_steps += 1
        self.after_step.append({k: v.detach().clone() for k, v in self.model.unet.state_dict().items()})


def hand_decay(step: int) -> float:
    """diffusers EMAModel.get_decay with warm-up, written out: 0 at the first step."""
    k = step - 1
    return 0.0 if k <= 0 else min(1 - (1 + k / INV_GAMMA) ** -POWER, DECAY)


def run(data: dict, callbacks=None) -> Path:
    from neurotrain_hf.config import build_config
    from neurotrain_hf.runner import run as run_config

    run_config(build_config(data), callbacks=callbacks)
    return Path(data["basic"]["output_dir"]) / "diffusion" / data["basic"]["run_id"]


def ema_of(folder: Path) -> dict[str, torch.Tensor]:
    weights = load_file(folder / "model.safetensors")
    return {k.removeprefix("ema_unet."): v for k, v in weights.items() if k.startswith("ema_unet.")}


def test_ema_recursion_checkpoint_resume_and_saved_pipeline(tmp_path):
    recorder = RawWeights()
    straight = run(config(tmp_path, "straight"), callbacks=[recorder])
    assert recorder.micro_steps == 8 and len(recorder.after_step) == 4  # 4 optimizer steps of 2 micro-steps
    expected = recorder.initial
    for step, weights in enumerate(recorder.after_step, start=1):
        d = hand_decay(step)
        expected = {k: d * expected[k].double() + (1 - d) * weights[k].double() for k in weights}
    ema = ema_of(straight / "checkpoint-4")
    assert set(ema) == set(expected)
    for key, value in expected.items():
        assert torch.allclose(ema[key].double(), value, atol=1e-6), key
    assert not torch.allclose(ema["conv_in.weight"], recorder.after_step[-1]["conv_in.weight"])

    resumed = run(
        config(tmp_path, "resumed", resume_from_checkpoint=str(straight / "checkpoint-2")),
    )
    for key, value in load_file(straight / "checkpoint-4" / "model.safetensors").items():
        assert torch.equal(load_file(resumed / "checkpoint-4" / "model.safetensors")[key], value), key

    saved = load_file(straight / "model" / "unet" / "diffusion_pytorch_model.safetensors")
    raw = load_file(straight / "model" / "unet_raw" / "diffusion_pytorch_model.safetensors")
    final = load_file(straight / "checkpoint-4" / "model.safetensors")
    for key in saved:
        assert torch.equal(saved[key], final[f"ema_unet.{key}"]), key
        assert torch.equal(raw[key], final[f"unet.{key}"]), key


@pytest.mark.slow
def test_sigkill_and_resume_restore_the_ema_bit_for_bit(tmp_path):
    """Killed at step 4 (checkpoint-3 complete), resumed from `last`: the saved EMA (`unet/`) and trained
    (`unet_raw/`) weights equal the uninterrupted run's bit for bit (the EMA decay continues from the
    checkpoint's step; timesteps and noise are drawn per step)."""
    from tests.test_resume import RUN, kill_and_resume

    data = config(tmp_path, "", gradient_accumulation_steps=1, **RUN)
    straight, killed = kill_and_resume(tmp_path, data)
    for part in ("unet", "unet_raw"):
        a, b = (
            load_file(d / "model" / part / "diffusion_pytorch_model.safetensors") for d in (straight, killed)
        )
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part

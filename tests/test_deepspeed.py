"""DeepSpeed ZeRO through `accelerate launch --config_file recipes/accelerate/*.yaml` on 2 CPU processes.

ZeRO-2, ZeRO-3 and ZeRO-3 with offload end with the final weights of plain DDP (same seed, data and
optimizer); ZeRO-3 saves gathered, full-shape model folders that the Auto classes load.
"""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from neurotrain_hf.config import build_config
from neurotrain_hf.errors import ConfigError
from neurotrain_hf.runner import build
from neurotrain_hf.trainer.neuro_config import check_offload_optimizer

from .conftest import tiny_config_dict, write_toml
from .helpers.launch import accelerate_launch

# DeepSpeed JIT-builds its CPU ops (shared-memory all-reduce at start, cpu_adam for offload) with g++ and
# ninja, once per machine (~/.cache/torch_extensions).
needs_deepspeed = pytest.mark.requires("deepspeed", "g++")

TOLERANCE = 1e-6  # measured vs DDP: ZeRO-2 0.0, ZeRO-3 1.5e-8 (SGD); ZeRO-3 offload 7.5e-8 (AdamW)


def equivalence_config(tmp_path, run_id, **training):
    """Digits, a tiny MLP (no BatchNorm, no dropout), 6 steps of plain SGD with clipping that bites."""
    data = tiny_config_dict(
        tmp_path,
        basic={"run_id": run_id},
        model={"name": "mlp", "kwargs": {"hidden": [32], "dropout": 0.0}},
        training={
            "max_steps": 6,
            "per_device_train_batch_size": 16,
            "optim": "sgd",  # AdamW would hide a wrong loss scale (platform notes)
            "learning_rate": 0.1,
            "max_grad_norm": 0.5,  # gradient norms are ~0.85: DeepSpeed's "auto" clipping is exercised
            "eval_strategy": "no",
            "save_strategy": "no",
            "metrics": [],
            **training,
        },
        testing={"run_after_training": False},
    )
    del data["training"]["batch_size"]
    return data


def launch(tmp_path, accelerate_config, data):
    """Train the digits recipe with an accelerate config file; return the run folder."""
    run_id = data["basic"]["run_id"]
    path = write_toml(tmp_path / f"{run_id}.toml", data)
    proc = accelerate_launch(
        None, "recipes/train_classification.py", str(path), config_file=accelerate_config
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_dir = tmp_path / "runs" / "classification" / run_id
    report = json.loads((run_dir / "report.json").read_text())
    assert report["world_size"] == 2 and report["global_step"] == 6  # both ranks in one group
    return run_dir


def weights(run_dir, folder="model"):
    return load_file(str(run_dir / folder / "model.safetensors"))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].shape == b[key].shape and a[key].numel() > 0, key
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=TOLERANCE)


@pytest.fixture(scope="module")
def ddp_sgd(tmp_path_factory):
    """The reference: `recipes/accelerate/ddp.yaml`, 2 CPU processes (use_cpu set by neurotrain)."""
    tmp_path = tmp_path_factory.mktemp("deepspeed")
    return tmp_path, launch(tmp_path, "ddp", equivalence_config(tmp_path, "ddp"))


@needs_deepspeed
def test_zero2_equals_ddp(ddp_sgd):
    tmp_path, ddp = ddp_sgd
    zero2 = launch(tmp_path, "zero2", equivalence_config(tmp_path, "zero2"))
    a, b = weights(ddp), weights(zero2)
    start = build(build_config(equivalence_config(tmp_path, "start")))[2].model.state_dict()
    assert any(not torch.equal(start[k], a[k]) for k in a)  # training moved the weights
    assert_same_weights(b, a)


@needs_deepspeed
def test_zero3_saves_full_model_that_auto_classes_load(ddp_sgd):
    from transformers import AutoModelForImageClassification

    tmp_path, ddp = ddp_sgd
    data = equivalence_config(tmp_path, "zero3", save_strategy="steps", save_steps=3)
    zero3 = launch(tmp_path, "zero3", data)
    assert_same_weights(weights(zero3), weights(ddp))  # gathered: full shapes, not empty partitions
    assert_same_weights(weights(zero3, "checkpoint-6"), weights(ddp))  # checkpoints are gathered too
    pixels = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = [
            AutoModelForImageClassification.from_pretrained(str(run / "model"))
            .eval()(pixel_values=pixels)
            .logits
            for run in (zero3, ddp)
        ]
    torch.testing.assert_close(logits[0], logits[1], rtol=0, atol=TOLERANCE)

    # the same checkpoints written without the 16-bit gather (per-rank ZeRO partitions only) consolidate
    # to the exact weights, on one CPU process, with the run's processor: a folder the Predictor serves
    from neurotrain_hf.cli import main
    from neurotrain_hf.predictor import Predictor
    from neurotrain_hf.trainer.consolidation import consolidate_in_place

    checkpoint = zero3 / "checkpoint-3"
    gathered = weights(zero3, "checkpoint-3")
    (checkpoint / "model.safetensors").unlink()
    assert main(["consolidate", str(checkpoint)]) == 0
    assert_exactly(weights(zero3, "checkpoint-3/consolidated"), gathered)
    images = [pixels[i, 0].numpy() * 16 for i in range(2)]
    predicted = Predictor.from_pretrained(checkpoint / "consolidated").predict(images)
    assert [p["label"] for p in predicted] == [
        p["label"] for p in Predictor.from_pretrained(zero3).predict(images)
    ]
    # a final model/ folder as Trainer.save_model leaves it without the gather: partitions only
    final = tmp_path / "partitioned" / "model"
    shutil.copytree(zero3 / "checkpoint-6", final)
    (final / "model.safetensors").unlink()
    assert consolidate_in_place(final) and not consolidate_in_place(final)  # once; then it is whole
    assert not any(final.glob("global_step*")) and not (final / "latest").exists()  # shards removed
    assert_exactly(load_file(str(final / "model.safetensors")), weights(zero3, "checkpoint-6"))


def assert_exactly(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
@needs_deepspeed
def test_zero3_offload_equals_ddp_with_adamw(tmp_path):
    """Offload swaps AdamW for DeepSpeed's cpu_adam, JIT-built on first use (slow: ~60 s the first time)."""
    adamw = {"optim": "adamw_torch", "learning_rate": 3e-3, "weight_decay": 0.01}
    ddp = launch(tmp_path, "ddp", equivalence_config(tmp_path, "ddp", **adamw))
    offload = launch(tmp_path, "zero3_offload", equivalence_config(tmp_path, "offload", **adamw))
    assert_same_weights(weights(offload), weights(ddp))


@pytest.mark.parametrize(
    ("optim", "env", "deepspeed", "refused"),
    [
        ("sgd", {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu"}, None, True),
        ("adamw_torch", {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu"}, None, False),
        ("sgd", {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "none"}, None, False),
        ("sgd", {}, {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}, True),
        ("sgd", {}, {"zero_optimization": {"stage": 2}, "zero_force_ds_cpu_optimizer": False}, False),
    ],
)
def test_offload_refuses_an_optimizer_it_would_replace(monkeypatch, optim, env, deepspeed, refused):
    monkeypatch.delenv("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", raising=False)
    monkeypatch.delenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true" if env else "false")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = SimpleNamespace(optim=optim, deepspeed=deepspeed)
    if refused:
        with pytest.raises(ConfigError, match="silently replace"):
            check_offload_optimizer(args)
    else:
        check_offload_optimizer(args)

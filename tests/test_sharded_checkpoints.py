"""Checkpoints that move: FSDP2 shards written by 2 processes (Accelerate's own writer) become one model
folder that one CPU process loads, with the exact weights; `neurotrain push` refuses a shard set in one
line; an FSDP config on CPU processes is refused in one line instead of silently training DDP.
ZeRO-3 shards are consolidated in tests/test_deepspeed.py, on the checkpoint its ZeRO-3 run writes."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from neurotrain_hf.cli import main
from neurotrain_hf.config import build_config
from neurotrain_hf.runner import build

from .conftest import free_port, run_python, tiny_config_dict, write_toml
from .helpers.launch import accelerate_launch


@pytest.fixture(scope="module")
def fsdp_checkpoint(tmp_path_factory):
    """A run folder whose model/ has its config but no weights, and checkpoint-1 holding the model's
    weights as FSDP2 DCP shards from 2 gloo processes; plus the weights they were made from."""
    tmp = tmp_path_factory.mktemp("fsdp")
    data = tiny_config_dict(tmp, model={"name": "mlp", "kwargs": {"hidden": [32], "dropout": 0.0}})
    model = build(build_config(data))[2].model
    with torch.no_grad():  # not the initialisation: values a mix-up of keys or shards would change
        for i, parameter in enumerate(model.parameters()):
            parameter.add_(torch.linspace(-1, 1, parameter.numel()).view_as(parameter) * (i + 1))
    run = tmp / "run"
    model.save_pretrained(run / "model")
    args = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    out = run_python([*args, "tests/helpers/fsdp_shards.py", str(run / "model"), str(run / "checkpoint-1")])
    assert out.returncode == 0, out.stderr[-3000:]
    reference = load_file(str(run / "model" / "model.safetensors"))
    (run / "model" / "model.safetensors").unlink()
    return run, reference


def test_fsdp2_shards_consolidate_to_the_exact_weights_one_process_loads(fsdp_checkpoint, capsys):
    from transformers import AutoModelForImageClassification

    run, reference = fsdp_checkpoint
    shards = sorted(p.name for p in (run / "checkpoint-1" / "pytorch_model_fsdp_0").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]  # one file per process
    assert main(["consolidate", str(run / "checkpoint-1")]) == 0
    out = run / "checkpoint-1" / "consolidated"
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"consolidated model: {out}"
    weights = load_file(str(out / "model.safetensors"))
    assert weights.keys() == reference.keys()
    for key in reference:
        assert torch.equal(weights[key], reference[key]), key
    model = AutoModelForImageClassification.from_pretrained(str(out)).eval()
    pixels = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = torch.relu(pixels.flatten(1) @ reference["net.1.weight"].T + reference["net.1.bias"])
        by_hand = hidden @ reference["net.4.weight"].T + reference["net.4.bias"]
        torch.testing.assert_close(model(pixel_values=pixels).logits, by_hand, rtol=0, atol=1e-6)


def test_push_refuses_a_shard_set_in_one_line_and_takes_it_once_consolidated(
    fsdp_checkpoint, tmp_path, capsys
):
    from neurotrain_hf.hub import stage_run

    run, reference = fsdp_checkpoint
    shards_only = tmp_path / "sharded_run"
    model = shards_only / "model"
    shutil.copytree(run / "checkpoint-1", model, ignore=shutil.ignore_patterns("consolidated"))
    shutil.copy2(run / "model" / "config.json", model / "config.json")
    (shards_only / "report.json").write_text(json.dumps({"task": "classification"}), encoding="utf-8")
    assert main(["push", str(shards_only), "someone/sharded"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {model}: per-rank fsdp shards, not a model one process loads: run "
        f"`neurotrain consolidate {model} --in-place` first"
    ]
    assert main(["consolidate", str(model), "--in-place"]) == 0  # what the line says to run
    staged = stage_run(shards_only, tmp_path / "staged")
    assert "model.safetensors" in staged and not any("fsdp" in name for name in staged)  # weights, no shards
    weights = load_file(str(tmp_path / "staged" / "model.safetensors"))
    assert all(torch.equal(weights[key], reference[key]) for key in reference)
    assert main(["consolidate", str(model)]) == 2  # nothing left to do: one line
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {model}: no shard set to consolidate (its weights are whole already)"
    )


def test_an_fsdp_config_on_cpu_processes_is_refused_in_one_line(tmp_path):
    """Accelerate enables FSDP on accelerator devices only: on CPU it would train plain DDP without a word."""
    config = write_toml(tmp_path / "fsdp.toml", tiny_config_dict(tmp_path, training={"max_steps": 2}))
    proc = accelerate_launch(1, "recipes/train_classification.py", str(config), config_file="fsdp2")
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert ours == [
        f"error: {config}: FSDP needs GPUs: Accelerate turns an FSDP config on CPU processes into plain DDP "
        "without a word. On CPU use recipes/accelerate/zero3.yaml (DeepSpeed ZeRO-3 shards the same states "
        "over gloo); on GPUs recipes/accelerate/fsdp2.yaml (benchmarks/gpu_proof.sh checks it)"
    ]
    assert not (tmp_path / "runs" / "classification" / "t" / "model").exists()

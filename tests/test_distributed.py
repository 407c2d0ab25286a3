"""CPU processes through `accelerate launch`: one gloo group, sharded data, identical weights, joint stops."""

import json
import math

import pytest

from .conftest import free_port, run_python, tiny_config_dict, write_toml


def accelerate_launch(num_processes: int, *script_args: str, timeout: int = 600):
    """`accelerate launch` the way docs/distributed.md says works on CPU (`--multi_gpu` for 2+ processes)."""
    multi = ["--multi_gpu"] if num_processes > 1 else []
    command = [
        "-m",
        "accelerate.commands.launch",
        *multi,
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        *script_args,
    ]
    return run_python(command, timeout=timeout)


@pytest.mark.slow
def test_single_process_accelerate_launch(tmp_path):
    cfg = write_toml(tmp_path / "one.toml", tiny_config_dict(tmp_path, training={"num_train_epochs": 1}))
    proc = accelerate_launch(1, "recipes/train_classification.py", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "runs" / "classification" / "t" / "report.json").read_text())
    assert report["world_size"] == 1 and report["global_step"] == 8


@pytest.mark.slow
def test_two_process_cpu_training(tmp_path):
    training = {"num_train_epochs": 2, "batch_size": 16, "metrics": ["accuracy"]}
    cfg = write_toml(
        tmp_path / "ddp.toml", tiny_config_dict(tmp_path, basic={"run_id": "ddp"}, training=training)
    )
    proc = accelerate_launch(2, "tests/helpers/ddp_train.py", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = tmp_path / "runs" / "classification" / "ddp" / "ranks"
    r0, r1 = (json.loads((ranks / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["weights"] == r1["weights"]  # gradients were all-reduced
    assert r0["first_batch_labels"] != r1["first_batch_labels"]  # each rank saw its own shard
    train_samples = 256
    assert r0["global_step"] == 2 * math.ceil(train_samples / (16 * 2))  # half the steps of one process
    report = json.loads((tmp_path / "runs" / "classification" / "ddp" / "report.json").read_text())
    assert report["world_size"] == 2 and report["test"]["num_samples"] > 0


@pytest.mark.slow
def test_nan_on_one_rank_stops_both(tmp_path):
    training = {"num_train_epochs": 2, "batch_size": 16}
    cfg = write_toml(
        tmp_path / "nan.toml", tiny_config_dict(tmp_path, basic={"run_id": "nan"}, training=training)
    )
    proc = accelerate_launch(
        2, "tests/helpers/ddp_train.py", "--nan-on-rank", "1", "3", str(cfg), timeout=300
    )
    assert proc.returncode != 0
    assert proc.stderr.count("non-finite training loss") >= 2, proc.stderr[-3000:]  # both ranks stopped

"""Two CPU processes through `accelerate launch`: one gloo group, sharded data, identical weights."""

import json
import math
import socket

import pytest

from .conftest import run_python, tiny_config_dict, write_toml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_single_process_accelerate_launch(tmp_path):
    cfg = write_toml(tmp_path / "one.toml", tiny_config_dict(tmp_path, training={"num_train_epochs": 1}))
    proc = run_python(
        [
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "recipes/train_classification.py",
            str(cfg),
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "runs" / "classification" / "t" / "report.json").read_text())
    assert report["world_size"] == 1 and report["global_step"] == 8


@pytest.mark.slow
def test_two_process_cpu_training(tmp_path):
    data = tiny_config_dict(
        tmp_path,
        basic={"run_id": "ddp"},
        training={"num_train_epochs": 2, "batch_size": 16, "metrics": ["accuracy"]},
    )
    cfg = write_toml(tmp_path / "ddp.toml", data)
    proc = run_python(
        [
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(free_port()),
            "tests/helpers/ddp_train.py",
            str(cfg),
        ],
        timeout=600,
    )
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
    data = tiny_config_dict(
        tmp_path, basic={"run_id": "nan"}, training={"num_train_epochs": 2, "batch_size": 16}
    )
    cfg = write_toml(tmp_path / "nan.toml", data)
    proc = run_python(
        [
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(free_port()),
            "tests/helpers/ddp_train.py",
            "--nan-on-rank",
            "1",
            "3",
            str(cfg),
        ],
        timeout=300,
    )
    assert proc.returncode != 0
    assert proc.stderr.count("non-finite training loss") >= 2, proc.stderr[-3000:]  # both ranks stopped

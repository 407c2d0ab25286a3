"""Two simulated nodes on this machine (two `accelerate launch --num_machines 2 --machine_rank 0|1
--main_process_ip 127.0.0.1`, one process each), each with its own run folder as on a cluster without a
shared filesystem: results travel through the process group, each node keeps its checkpoints, and the
loss of one node ends the other with one line."""

import contextlib
import csv
import json
import subprocess
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file

from .conftest import free_port, tiny_config_dict, write_toml
from .helpers.launch import accelerate_launch, launch_node

pytestmark = pytest.mark.slow
TRAIN = "recipes/train_classification.py"


def config(tmp_path, folder: str, run_id: str, **training):
    data = tiny_config_dict(
        tmp_path / folder,
        basic={"run_id": run_id},
        model={"name": "mlp", "kwargs": {"hidden": [32], "dropout": 0.0}},  # no BatchNorm: DDP == 1e-6
        training={
            "max_steps": 8,
            "optim": "sgd",
            "learning_rate": 0.1,
            "per_device_train_batch_size": 16,
            "eval_strategy": "steps",
            "eval_steps": 4,
            "save_strategy": "steps",
            "save_steps": 4,
            "metrics": ["accuracy"],
            **training,
        },
    )
    del data["training"]["batch_size"]
    return write_toml(tmp_path / f"{folder}.toml", data)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def kill_node(node: subprocess.Popen) -> None:
    """SIGKILL a simulated node: its launcher and the workers it started (in sessions of their own)."""
    if node.poll() is not None:
        return
    launcher = psutil.Process(node.pid)
    for process in [*launcher.children(recursive=True), launcher]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    node.wait()


def run_nodes(tmp_path, *configs, timeout: int = 300) -> list[str]:
    """Both nodes to their end; their logs (stdout and stderr), after asserting each exited with 0."""
    port, logs = free_port(), [tmp_path / f"node{r}.log" for r in range(len(configs))]
    nodes = [launch_node(r, port, logs[r], TRAIN, str(c)) for r, c in enumerate(configs)]
    try:
        for node in nodes:
            node.wait(timeout=timeout)
    finally:
        for node in nodes:
            kill_node(node)
    texts = [log.read_text() for log in logs]
    assert [node.returncode for node in nodes] == [0] * len(nodes), [text[-3000:] for text in texts]
    return texts


def test_two_nodes_with_their_own_disks_equal_one_node_with_two_processes(tmp_path):
    one = config(tmp_path, "one", "mn")
    proc = accelerate_launch(2, TRAIN, str(one))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_nodes(tmp_path, config(tmp_path, "node0", "mn"), config(tmp_path, "node1", "mn"))

    reference = tmp_path / "one" / "runs" / "classification" / "mn"
    main, other = (tmp_path / f"node{r}" / "runs" / "classification" / "mn" for r in (0, 1))
    expected = load_file(str(reference / "model" / "model.safetensors"))
    for folder in (main, other):  # each node wrote the final model on its own disk
        got = load_file(str(folder / "model" / "model.safetensors"))
        assert got.keys() == expected.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)
        assert (folder / "checkpoint-8" / "neurotrain_complete.json").is_file()  # save_on_each_node

    # the test results of node 1's rank reached node 0 through the process group
    report, ref_report = (json.loads((f / "report.json").read_text()) for f in (main, reference))
    assert report["world_size"] == 2 and report["test"].keys() == ref_report["test"].keys()
    for key, value in ref_report["test"].items():
        assert report["test"][key] == (pytest.approx(value, rel=1e-6) if isinstance(value, float) else value)
    rows, ref_rows = (read_csv(f / "test_per_sample.csv") for f in (main, reference))
    assert [int(r["index"]) for r in rows] == list(range(report["test"]["num_samples"]))
    assert len(rows) == len(ref_rows) and rows[0].keys() == ref_rows[0].keys()
    for row, ref in zip(rows, ref_rows):  # the same rows, to float rounding (weights equal to 1e-6)
        for key, value in ref.items():
            assert row[key] == value or float(row[key]) == pytest.approx(float(value), rel=1e-5), (key, row)
    assert not list(main.glob(".test_*")) and not list(other.glob(".test_*"))  # parts and staging gone
    assert not (other / "test_per_sample.csv").exists()


def test_a_killed_node_ends_the_other_with_one_line(tmp_path):
    long = {"max_steps": 100000, "eval_strategy": "no", "save_strategy": "no", "logging_steps": 1}
    long["ddp_timeout"] = 20  # seconds a collective waits for a peer (docs/distributed.md "Several nodes")
    configs = [config(tmp_path, f"node{r}", "kill", **long) for r in (0, 1)]
    port, logs = free_port(), [tmp_path / f"node{r}.log" for r in (0, 1)]
    nodes = [launch_node(r, port, logs[r], TRAIN, str(c)) for r, c in enumerate(configs)]
    try:
        history = tmp_path / "node0" / "runs" / "classification" / "kill" / "history.jsonl"
        deadline = time.monotonic() + 240
        while not history.is_file() and time.monotonic() < deadline and nodes[0].poll() is None:
            time.sleep(0.5)
        assert history.is_file(), logs[0].read_text()[-3000:]
        kill_node(nodes[1])
        began = time.monotonic()
        nodes[0].wait(timeout=120)  # TimeoutExpired: node 0 hangs
        waited = time.monotonic() - began
    finally:
        for node in nodes:
            kill_node(node)
    log = logs[0].read_text()
    lines = [line for line in log.splitlines() if line.startswith("error:")]
    assert nodes[0].returncode != 0 and len(lines) == 1, log[-3000:]
    assert "lost contact with another process" in lines[0] and waited < 60, (waited, lines)
    assert "Traceback" not in log.split(lines[0])[0], log[-3000:]  # the launcher's summary follows the line

"""CPU processes through `accelerate launch`: one gloo group, sharded data, exact equivalences, joint stops."""

import json
import math
import shutil
import sqlite3

import pytest
import torch
from safetensors.torch import load_file

from neurotrain_hf.config import build_config
from neurotrain_hf.errors import TrainingHaltedError
from neurotrain_hf.runner import build
from neurotrain_hf.runner import run as run_experiment

from .conftest import tiny_config_dict, write_toml
from .helpers.launch import accelerate_launch


def weights(run_dir):
    return load_file(str(run_dir / "model" / "model.safetensors"))


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
    with sqlite3.connect(tmp_path / "runs" / "neurotrain.db") as conn:  # indexed once, by rank 0
        indexed = conn.execute("SELECT name, status, world_size FROM runs").fetchall()
        tested = conn.execute(
            "SELECT value FROM metrics WHERE split = 'test' AND name = 'num_samples'"
        ).fetchall()
    assert indexed == [("ddp", "finished", 2)] and tested == [(report["test"]["num_samples"],)]


def _equivalence_config(tmp_path, run_id, **training):
    data = tiny_config_dict(
        tmp_path,
        basic={"run_id": run_id},
        model={"name": "mlp", "kwargs": {"hidden": [32], "dropout": 0.0}},  # no BatchNorm, no dropout
        training={
            "max_steps": 6,
            "optim": "sgd",  # AdamW would hide a wrong loss scale (platform notes)
            "learning_rate": 0.1,
            "eval_strategy": "no",
            "save_strategy": "no",
            "metrics": [],
            **training,
        },
        testing={"run_after_training": False},
    )
    del data["training"]["batch_size"]
    return data


@pytest.mark.slow
def test_two_processes_equal_one_big_batch_and_accumulation(tmp_path):
    """2 ranks x batch 16 == 1 process x batch 32 == 1 process x 16 x 2 accumulation, to 1e-6; and the
    2-rank checkpoint of step 3 resumed on 1 process x 32 (elastic) ends with the 2-rank weights."""
    saving = {"save_strategy": "steps", "save_steps": 3}
    ddp = write_toml(
        tmp_path / "ddp.toml", _equivalence_config(tmp_path, "ddp", per_device_train_batch_size=16, **saving)
    )
    proc = accelerate_launch(2, "tests/helpers/ddp_train.py", str(ddp))
    assert proc.returncode == 0, proc.stderr[-3000:]
    big = build_config(_equivalence_config(tmp_path, "big", per_device_train_batch_size=32))
    accum = build_config(
        _equivalence_config(tmp_path, "accum", per_device_train_batch_size=16, gradient_accumulation_steps=2)
    )
    run_experiment(big)
    run_experiment(accum)
    root = tmp_path / "runs" / "classification"
    a, b, c = weights(root / "ddp"), weights(root / "big"), weights(root / "accum")
    start = build(big)[2].model.state_dict()
    assert any(not torch.equal(start[k], b[k]) for k in b)  # training moved the weights
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
        torch.testing.assert_close(c[key], b[key], rtol=0, atol=1e-6)

    def resumed(run_id, **batch):
        shutil.copytree(root / "ddp" / "checkpoint-3", root / run_id / "checkpoint-3")
        data = _equivalence_config(tmp_path, run_id, resume_from_checkpoint="last", **saving, **batch)
        return build_config(data)

    report = run_experiment(resumed("elastic", per_device_train_batch_size=32))
    assert report["world_size"] == 1 and report["global_step"] == 6
    d = weights(root / "elastic")
    for key in a:
        torch.testing.assert_close(d[key], a[key], rtol=0, atol=1e-6)
    with pytest.raises(TrainingHaltedError) as refused:  # 1 x 16: another global batch
        run_experiment(resumed("smaller", per_device_train_batch_size=16))
    assert str(refused.value) == (
        f"resume: {root / 'smaller' / 'checkpoint-3'} was trained with a global batch of 32 (2 process(es) x 16 "
        "x 1 accumulation), this run has 16 (1 x 16 x 1): keep the product, or set [training] "
        "allow_global_batch_change = true"
    )


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(tmp_path):
    """Per-rank metric state reduced once: same metrics as one process, padding samples not counted."""
    data = tiny_config_dict(
        tmp_path,
        basic={"run_id": "eval"},
        training={"per_device_eval_batch_size": 7, "metrics": ["accuracy", "f1", "auc", "top3"]},
    )
    cfg = write_toml(tmp_path / "eval.toml", data)
    proc = accelerate_launch(2, "tests/helpers/ddp_train.py", "--eval-only", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = tmp_path / "runs" / "classification" / "eval" / "ranks"
    r0, r1 = (json.loads((ranks / f"eval_rank{i}.json").read_text()) for i in (0, 1))

    def scores(metrics):
        return {k: v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second", "_time"))}

    assert r0["world_size"] == 2 and scores(r0["metrics"]) == scores(r1["metrics"])
    _, data_1, trainer = build(build_config(data))
    one = trainer.evaluate()
    n = len(data_1.splits["valid"])
    assert n % 14 != 0  # the last round of batches is padded on 2 ranks
    two = r0["metrics"]
    assert two["eval_num_samples"] == one["eval_num_samples"] == n
    for key in ("eval_accuracy", "eval_f1", "eval_top3"):
        assert two[key] == one[key], key
    assert two["eval_auc"] == pytest.approx(one["eval_auc"], abs=1e-12)
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-6)
    assert r0["artifacts"]["confusion"] == trainer.last_eval["confusion"]


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
    run = tmp_path / "runs" / "classification" / "nan"
    for r in (0, 1):  # each rank recorded that it stopped, at the same step
        record = json.loads((run / f"halted_rank{r}.json").read_text())
        assert record == {"rank": r, "step": 3, "last_good_checkpoint": None}


@pytest.mark.slow
def test_two_process_resume_is_bit_exact(tmp_path):
    def config(run_id):
        data = tiny_config_dict(
            tmp_path,
            basic={"run_id": run_id},
            model={"kwargs": {"channels": [8, 16], "dropout": 0.3}},
            training={
                "num_train_epochs": 2,
                "batch_size": 16,
                "eval_strategy": "no",
                "save_strategy": "steps",
                "save_steps": 5,
                "metrics": [],
            },
            augmentation={"horizontal_flip": 0.5, "rotation": 10.0},
            testing={"run_after_training": False},
        )
        return write_toml(tmp_path / f"{run_id}.toml", data)

    straight, killed = config("straight"), config("killed")
    proc = accelerate_launch(2, "tests/helpers/ddp_train.py", str(straight))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = accelerate_launch(2, "tests/helpers/ddp_train.py", "--kill-at-step", "7", str(killed))
    assert proc.returncode != 0
    root = tmp_path / "runs" / "classification"
    assert not (root / "killed" / "model").exists()
    proc = accelerate_launch(
        2, "tests/helpers/ddp_train.py", str(killed), "--training.resume_from_checkpoint", "last"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = weights(root / "straight"), weights(root / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

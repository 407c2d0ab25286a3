"""``neurotrain tune`` on digits: a 6-trial study with median pruning that is SIGKILLed after 3 trials and
resumed to 6; its best config retrains to the best trial's metric; 2 workers on one study (SQLite and a
real PostgreSQL server) run disjoint trials; under ``accelerate launch`` both ranks train the trial rank 0
sampled. Everything is read back through optuna's own API and the run folders."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import OFFLINE, ROOT, tiny_config_dict, write_toml

NEUROTRAIN = [sys.executable, "-m", "neurotrain_hf.cli"]
ENV = {**os.environ, **OFFLINE, "PYTHONUNBUFFERED": "1"}


def tune_toml(root: Path, trials: int, **tune) -> Path:
    data = tiny_config_dict(root)
    data["basic"]["run_id"] = "search"
    data["dataset"]["max_samples"] = 200
    data["model"]["kwargs"]["dropout"] = 0.2  # random masks: a retrain matches only with the same RNG stream
    data["training"].update(
        num_train_epochs=3, eval_strategy="epoch", save_strategy="epoch", metric_for_best_model="accuracy"
    )
    data["training"]["plots"] = False
    data["tune"] = {
        "trials": trials,
        "pruner": "median",
        "startup_trials": 2,
        "sampler_seed": 0,
        "heartbeat_s": 1,
        "learning_rate": {"low": 1e-4, "high": 3e-2, "log": True},
        "model": {"kwargs": {"channels": {"choices": [[8, 16], [16, 32]]}}},
        **tune,
    }
    return write_toml(root / "tune.toml", data)


def load(url: str, name: str = "search"):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=url)


def counted(study) -> list:
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A study SIGKILLed once 3 trials have ended, then run again: (root, trials before the kill, output)."""
    root = tmp_path_factory.mktemp("tune")
    config = tune_toml(root, trials=6)
    url = f"sqlite:///{root / 'runs' / 'neurotrain.db'}"
    proc = subprocess.Popen(
        [*NEUROTRAIN, "tune", str(config)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "first.log", "w"),  # noqa: SIM115 - a file, not a pipe that could fill and block
    )
    deadline = time.time() + 240
    db = root / "runs" / "neurotrain.db"
    ended = "SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if not db.is_file():
            continue
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                if conn.execute(ended).fetchone()[0] >= 3:
                    proc.kill()
                    break
        except sqlite3.Error:  # the study's tables are not there yet
            continue
    proc.wait(timeout=30)
    assert proc.returncode == -9, f"not killed mid-search: {(root / 'first.log').read_text()[-2000:]}"
    before = [(t.number, t.state.name, t.params, t.value) for t in counted(load(url))]
    assert len(before) >= 3
    time.sleep(2.5)  # the killed trial's heartbeat goes stale (heartbeat_s = 1: grace 2 s)
    out = subprocess.run(
        [*NEUROTRAIN, "tune", str(config)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return root, url, before, out.stdout


def test_a_killed_search_resumes_to_the_number_of_trials_asked(resumed):
    root, url, before, stdout = resumed
    study = load(url)
    done = counted(study)
    assert len(done) == 6
    assert [
        (t.number, t.state.name, t.params, t.value) for t in done[: len(before)]
    ] == before  # kept, not rerun
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(study.trials) == 6 + len(failed) and len(failed) <= 1  # only the trial the kill interrupted
    assert any(t.state.name == "PRUNED" for t in done), [t.state.name for t in study.trials]
    lines = stdout.strip().splitlines()
    assert lines[-2] == f"study folder: {root / 'runs' / 'classification' / 'search'}"
    best = study.best_trial
    assert lines[-1].startswith(
        f"tune search: best trial {best.number} with valid accuracy {best.value:.4f} (maximize)"
    )


def test_every_trial_is_a_run_of_the_index_linked_to_its_study(resumed):
    root, url, _, _ = resumed
    study = load(url)
    with sqlite3.connect(root / "runs" / "neurotrain.db") as conn:
        rows = dict(conn.execute("SELECT trial, status FROM runs WHERE study = 'search'"))
        lr = dict(
            conn.execute(
                "SELECT r.trial, p.number FROM runs r JOIN params p ON p.run_id = r.id "
                "WHERE p.key = 'training.learning_rate' AND r.study = 'search'"
            )
        )
    expected = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "crashed"}
    # the killed trial has a row when the kill came after its training started (marked crashed on resume)
    killed = [t.number for t in study.trials if t.state.name == "FAIL" and t.number not in rows]
    assert rows == {t.number: expected[t.state.name] for t in study.trials if t.number not in killed}
    assert lr == {t.number: t.params["training.learning_rate"] for t in study.trials if t.number in rows}
    folder = root / "runs" / "classification" / "search"
    assert {p.name for p in folder.iterdir()} >= {
        "best.toml",
        "trials.csv",
        "summary.json",
        "history.png",
        "importance.png",
        "parallel_coordinate.png",
    }
    for trial in counted(study):
        history = [
            json.loads(line)
            for line in (folder / f"trial-{trial.number}" / "history.jsonl").read_text().splitlines()
        ]
        evaluations = [r["eval_accuracy"] for r in history if "eval_accuracy" in r]
        assert evaluations[-1] == trial.value or trial.state.name == "PRUNED"
        assert list(trial.intermediate_values.values()) == evaluations


def test_the_best_config_retrains_to_the_best_trials_metric(resumed):
    from neurotrain_hf.config import load_config
    from neurotrain_hf.runner import run
    from neurotrain_hf.trainer.run_folder import read_history

    root, url, _, _ = resumed
    best = load(url).best_trial
    config = load_config(root / "runs" / "classification" / "search" / "best.toml")
    assert (
        "tune" not in config.extra and config.training.learning_rate == best.params["training.learning_rate"]
    )
    assert list(config.model.kwargs["channels"]) == json.loads(best.params["model.kwargs.channels"])
    report = run(config)
    trial = root / "runs" / "classification" / "search" / f"trial-{best.number}"

    def evaluations(folder) -> list[dict]:
        return [
            {
                k: v
                for k, v in row.items()
                if k.startswith("eval_") and not k.endswith(("_runtime", "_second"))
            }
            for row in read_history(folder)
            if "eval_loss" in row
        ]

    retrained = evaluations(report["run_dir"])
    assert retrained[-1]["eval_accuracy"] == best.value
    assert retrained == evaluations(trial)  # every evaluation, losses included: the same training


def test_a_bad_tune_section_is_one_line(tmp_path, capsys):
    from neurotrain_hf.cli import main

    data = tiny_config_dict(tmp_path)
    data["training"]["metric_for_best_model"] = "accuracy"
    cases = {
        "dataset.max_samples": (
            {"dataset": {"max_samples": {"choices": [10, 20]}}},
            "[tune] dataset.max_samples: [dataset] keys cannot be searched",
        ),
        "low >= high": (
            {"learning_rate": {"low": 1e-2, "high": 1e-3}},
            "[tune] learning_rate: needs low < high",
        ),
        "setting": (
            {"trails": 3, "learning_rate": {"low": 1e-3, "high": 1e-2}},
            "[tune] trails: not a setting",
        ),
        "no section": (None, "no [tune] section"),
        "unknown model": (
            {"model": {"name": {"choices": ["simple_cnn", "resnet_9000"]}}},
            "[tune] model.name = 'resnet_9000': unknown model 'resnet_9000'",
        ),
    }
    for name, (section, message) in cases.items():
        data.pop("tune", None)
        if section is not None:
            data["tune"] = section
        path = write_toml(tmp_path / "bad.toml", data)
        capsys.readouterr()
        assert main(["tune", str(path)]) == 2, name
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and message in lines[0], (
            name,
            lines,
        )


def test_a_search_whose_trials_all_fail_stops_with_the_error(tmp_path, capsys):
    from neurotrain_hf.cli import main

    data = tiny_config_dict(tmp_path)
    data["training"]["metric_for_best_model"] = "accuracy"
    data["tune"] = {
        "trials": 20,
        "model": {"kwargs": {"widths": {"choices": [8, 16]}}},
    }  # simple_cnn has no widths
    path = write_toml(tmp_path / "failing.toml", data)
    capsys.readouterr()
    assert main(["tune", str(path)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(
        "error: tune: 5 trials in a row failed, the last with: [model] simple_cnn: bad kwargs"
    )
    import optuna

    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'runs' / 'neurotrain.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL"] * 5


def test_a_trial_killed_before_its_first_heartbeat_turns_fail_once_the_grace_period_is_over(tmp_path):
    """optuna skips RUNNING trials without a heartbeat in fail_stale_trials: a worker SIGKILLed between
    ask and the heartbeat thread's first beat would keep its trial counted forever."""
    import optuna

    from neurotrain_hf.tune.search import fail_dead_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1
    )
    study = optuna.create_study(study_name="s", storage=storage)
    other = optuna.create_study(study_name="other", storage=storage)
    silent, other_silent = study.ask(), other.ask()  # asked, never beaten: what a kill right after ask leaves
    beating = study.ask()
    time.sleep(1.3)
    storage.record_heartbeat(beating._trial_id)  # a live worker's trial: fresh heartbeat
    young = study.ask()  # asked just now: its heartbeat thread may not have run yet
    fail_dead_trials(study, storage, 1)
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states == {silent.number: "FAIL", beating.number: "RUNNING", young.number: "RUNNING"}
    assert other.get_trials()[other_silent.number].state.name == "RUNNING"  # only this study's trials

"""``neurotrain tune`` with several processes: 2 workers on one study (SQLite, and a real PostgreSQL server
holding both the study and the runs index) run disjoint trials; under ``accelerate launch`` both ranks
train the trial rank 0 sampled, from the same initial weights."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from ..helpers.launch import accelerate_launch
from .test_tune import ENV, NEUROTRAIN, ROOT, load, tune_toml


@pytest.mark.parametrize(
    "storage", ["sqlite", pytest.param("postgresql", marks=pytest.mark.requires("postgresql"))]
)
def test_two_workers_share_one_study_without_running_a_trial_twice(storage, tmp_path, request):
    # architecture search: a categorical over whole [model] tables of two registered models
    models = [
        {"name": "simple_cnn", "kwargs": {"channels": [8, 16]}},
        {"name": "mlp", "kwargs": {"hidden": [32]}},
    ]
    config = tune_toml(tmp_path, trials=4, pruner="none", model={"choices": models})
    env = dict(ENV)
    if storage == "postgresql":
        from ..pg_server import new_database

        url = new_database(request.getfixturevalue("postgres_url"), f"tune_{int(time.time() * 1000) % 10**9}")
        env["NEUROTRAIN_DATABASE"] = url  # the runs index and the study in one PostgreSQL database
    else:
        url = f"sqlite:///{tmp_path / 'runs' / 'neurotrain.db'}"
    out = subprocess.run(
        [*NEUROTRAIN, "tune", str(config), "--workers", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    study = load(url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    workers = [t.user_attrs["worker"] for t in study.trials]
    assert sorted(set(workers)) == [0, 1], workers  # both workers ran trials, each trial once
    rates = [t.params["training.learning_rate"] for t in study.trials]
    assert len(set(rates)) == 4  # no two workers sampled the same values
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        trials = (
            conn.execute(text("SELECT trial FROM runs WHERE study = 'search' AND status = 'finished'"))
            .scalars()
            .all()
        )
    engine.dispose()
    assert sorted(trials) == [0, 1, 2, 3]
    import tomllib

    for trial in study.trials:  # each trial trained the model it drew
        written = tomllib.loads(
            (
                tmp_path / "runs" / "classification" / "search" / f"trial-{trial.number}" / "config.toml"
            ).read_text()
        )
        chosen = json.loads(trial.params["model"])
        assert {k: written["model"][k] for k in chosen} == chosen


def test_under_accelerate_launch_every_rank_trains_the_trial_rank_0_sampled(tmp_path):
    config = tune_toml(tmp_path, trials=2, pruner="none")
    proc = accelerate_launch(2, "tests/helpers/tune_ranks.py", str(config), str(tmp_path), timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [
        [json.loads(line) for line in (tmp_path / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)
    ]
    assert ranks[0] == ranks[1] and len(ranks[0]) == 2  # same trial, values and initial weights on both ranks
    study = load(f"sqlite:///{tmp_path / 'runs' / 'neurotrain.db'}")
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    for row, trial in zip(ranks[0], study.trials):
        assert row["trial"] == f"trial-{trial.number}"
        assert row["learning_rate"] == trial.params["training.learning_rate"]
        assert row["first_channels"] == json.loads(trial.params["model.kwargs.channels"])[0]

"""The runs index written live by real runs: a finished, a failed (an error raised from the data path
mid-run), a halted (NaN loss) and a SIGKILLed run each end with their status and metrics, checked
against their run folders (history.jsonl, report.json); ``runs list --where`` returns exactly the runs a
hand-written filter over those folders picks; ``runs import`` gives the rows live indexing wrote."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import TrainerCallback

from neurotrain_hf.cli import main
from neurotrain_hf.errors import DataError, TrainingHaltedError

from ..conftest import OFFLINE, ROOT, make_config, tiny_config_dict, write_toml

RATES = {"finished": 3e-3, "failed": 1e-3, "halted": 2e-3, "killed": 5e-3}
EVERY_3 = {
    "eval_strategy": "steps",
    "eval_steps": 3,
    "save_strategy": "steps",
    "save_steps": 3,
    "plots": False,
}


class RaiseAt(TrainerCallback):
    """Raises a DataError at a step, as the loader does for a corrupt sample met mid-run."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise DataError("digits: sample 17: cannot decode the image (simulated corrupt file)")


class PoisonAt(RaiseAt):
    """Makes the model's output NaN from a step on (the non-finite-loss guard halts the run)."""

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            model.head.register_forward_hook(lambda module, inputs, output: output * float("nan"))


def _config(root: Path, name: str):
    return make_config(
        root,
        basic={"run_id": name},
        training={**EVERY_3, "learning_rate": RATES[name]},
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four runs into one index (tmp/runs/neurotrain.db); returns the runs root."""
    from neurotrain_hf.runner import run

    root = tmp_path_factory.mktemp("index")
    run(_config(root, "finished"))
    with pytest.raises(DataError):
        run(_config(root, "failed"), callbacks=[RaiseAt(7)])
    with pytest.raises(TrainingHaltedError, match="non-finite"):
        run(_config(root, "halted"), callbacks=[PoisonAt(8)])
    data = tiny_config_dict(root)
    data["basic"]["run_id"] = "killed"
    data["training"].update(EVERY_3, learning_rate=RATES["killed"])
    config = write_toml(root / "killed.toml", data)
    proc = subprocess.run(
        [sys.executable, "tests/helpers/train_until.py", str(config), "--kill-at-step", "10"],
        cwd=ROOT,
        env={**__import__("os").environ, **OFFLINE},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    return root / "runs"


def runs_cli(capsys, root: Path, *args: str) -> list[dict]:
    """``neurotrain runs --database ROOT/neurotrain.db ... --json`` rows (in this process)."""
    capsys.readouterr()
    assert main(["runs", "--database", str(root / "neurotrain.db"), *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def rows(root: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(root / "neurotrain.db") as conn:
        return conn.execute(sql, params).fetchall()


def history_evaluations(folder: Path) -> dict[tuple[int, str], float]:
    out = {}
    for line in (folder / "history.jsonl").read_text().splitlines():
        row = json.loads(line)
        for key, value in row.items():
            if key.startswith("eval_") and not key.endswith(("_runtime", "_per_second")):
                out[(row["step"], key[5:])] = value
    return out


def test_each_run_ends_with_its_status_and_the_metrics_of_its_folder(runs, capsys):
    listed = {r["name"]: r for r in runs_cli(capsys, runs, "list", "--json")}
    assert {name: r["status"] for name, r in listed.items()} == {
        "finished": "finished",
        "failed": "failed",
        "halted": "halted",
        "killed": "crashed",  # its pid is gone: marked when the index is next read
    }
    assert "sample 17: cannot decode" in listed["failed"]["error"]
    assert "non-finite training loss" in listed["halted"]["error"]
    assert all(r["ended_at"] for r in listed.values())
    for name, run in listed.items():
        folder = runs / "classification" / name
        recorded = {
            (step, metric): value
            for step, metric, value in rows(
                runs, "SELECT step, name, value FROM metrics WHERE run_id = ? AND split = 'valid'", run["id"]
            )
        }
        assert recorded == history_evaluations(folder), name  # every evaluation, exactly
        assert (
            max(step for step, _ in recorded) == {"finished": 16, "failed": 6, "halted": 6, "killed": 9}[name]
        )
    report = json.loads((runs / "classification" / "finished" / "report.json").read_text())
    test = dict(
        rows(
            runs,
            "SELECT name, value FROM metrics WHERE run_id = ? AND split = 'test'",
            listed["finished"]["id"],
        )
    )
    assert test == {k: v for k, v in report["test"].items() if isinstance(v, (int, float))}
    artefacts = dict(
        rows(runs, "SELECT path, kind FROM artefacts WHERE run_id = ?", listed["finished"]["id"])
    )
    assert artefacts["model/model.safetensors"] == "model" and artefacts["config.toml"] == "config"
    for name in ("failed", "halted", "killed"):
        assert not rows(runs, "SELECT 1 FROM metrics WHERE run_id = ? AND split = 'test'", listed[name]["id"])


def test_the_config_is_stored_whole_and_queryable(runs):
    (run_id, text, digest) = rows(
        runs, "SELECT id, config_toml, config_hash FROM runs WHERE name = 'finished'"
    )[0]
    folder_text = (runs / "classification" / "finished" / "config.toml").read_text()
    import hashlib

    assert text == folder_text and digest == hashlib.sha256(folder_text.encode()).hexdigest()
    params = dict(rows(runs, "SELECT key, number FROM params WHERE run_id = ?", run_id))
    assert params["training.learning_rate"] == 3e-3 and params["training.batch_size"] == 32


@pytest.mark.parametrize(
    "where",
    [
        "status = finished or status = halted",
        "test.accuracy > 0",
        "training.learning_rate >= 2e-3 and status != crashed",
        "(training.learning_rate < 2.5e-3 or status = crashed) and valid.loss > 0",
        "model.name = simple_cnn and valid.accuracy <= 1",
        "name ~ ill",
    ],
)
def test_where_returns_exactly_the_runs_a_filter_over_the_folders_picks(runs, capsys, where):
    statuses = {"finished": "finished", "failed": "failed", "halted": "halted", "killed": "crashed"}

    def last_valid(name: str, metric: str) -> float:
        evaluations = history_evaluations(runs / "classification" / name)
        return max((step, value) for (step, key), value in evaluations.items() if key == metric)[1]

    def test_accuracy(name: str):
        path = runs / "classification" / name / "report.json"
        return json.loads(path.read_text())["test"]["accuracy"] if path.is_file() else None

    expected = {
        "status = finished or status = halted": {
            n for n, s in statuses.items() if s in ("finished", "halted")
        },
        "test.accuracy > 0": {n for n in statuses if (test_accuracy(n) or 0) > 0},
        "training.learning_rate >= 2e-3 and status != crashed": {
            n for n in statuses if RATES[n] >= 2e-3 and statuses[n] != "crashed"
        },
        "(training.learning_rate < 2.5e-3 or status = crashed) and valid.loss > 0": {
            n
            for n in statuses
            if (RATES[n] < 2.5e-3 or statuses[n] == "crashed") and last_valid(n, "loss") > 0
        },
        "model.name = simple_cnn and valid.accuracy <= 1": set(statuses),
        "name ~ ill": {"killed"},
    }[where]
    got = {r["name"] for r in runs_cli(capsys, runs, "list", "--where", where, "--json")}
    assert got == expected and expected


def test_sort_by_a_config_key_and_by_a_metric(runs, capsys):
    by_rate = [
        r["name"]
        for r in runs_cli(capsys, runs, "list", "--sort", "training.learning_rate", "--desc", "--json")
    ]
    assert by_rate == sorted(RATES, key=RATES.get, reverse=True)
    capsys.readouterr()
    assert main(["runs", "--database", str(runs / "neurotrain.db"), "list", "--where", "test.f1 > 0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "task", "name", "status", "started", "seconds", "test.f1"]
    assert out[-1] == "1 run(s)" and " finished " in out[1]


def test_import_of_the_folders_gives_the_rows_live_indexing_wrote(runs, tmp_path, capsys):
    other = tmp_path / "imported.db"
    capsys.readouterr()
    assert main(["runs", "--database", str(other), "import", str(runs)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "imported 4 run folder(s): 3 crashed, 1 finished"

    def snapshot(path: Path, name: str) -> dict:
        with sqlite3.connect(path) as conn:
            run = conn.execute(
                "SELECT id, task, name, run_dir, config_toml, config_hash, status, world_size, device, git_commit "
                "FROM runs WHERE name = ?",
                (name,),
            ).fetchone()
            return {
                "run": run[1:],
                "params": sorted(
                    conn.execute("SELECT key, value, number FROM params WHERE run_id = ?", run[:1])
                ),
                "metrics": sorted(
                    conn.execute("SELECT split, step, name, value FROM metrics WHERE run_id = ?", run[:1])
                ),
                "artefacts": sorted(
                    conn.execute("SELECT path, kind, sha256, size FROM artefacts WHERE run_id = ?", run[:1])
                ),
            }

    live, imported = snapshot(runs / "neurotrain.db", "finished"), snapshot(other, "finished")
    assert imported == live and live["metrics"] and live["artefacts"] and live["params"]


def test_show_and_compare(runs, capsys, tmp_path):
    listed = {r["name"]: r["id"] for r in runs_cli(capsys, runs, "list", "--json")}
    (details,) = runs_cli(capsys, runs, "show", str(listed["finished"]), "--json")
    report = json.loads((runs / "classification" / "finished" / "report.json").read_text())
    assert details["metrics"]["test"]["accuracy"] == report["test"]["accuracy"]
    assert details["params"]["training.learning_rate"] == 3e-3
    capsys.readouterr()
    ids = [str(listed["finished"]), str(listed["halted"])]
    assert (
        main(["runs", "--database", str(runs / "neurotrain.db"), "compare", *ids, "--out", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    rate = next(line for line in out if line.startswith("training.learning_rate"))
    assert rate.split()[1:] == ["0.003", "0.002"]
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert main(["runs", "--database", str(runs / "neurotrain.db"), "show", "999"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: runs: no run with id 999 (`neurotrain runs list` shows them)"
    )


def test_a_stale_heartbeat_from_another_host_is_crashed_a_fresh_one_is_not(tmp_path):
    from datetime import timedelta

    from neurotrain_hf.runs.database import RunsDatabase
    from neurotrain_hf.runs.recorder import mark_crashed, utcnow
    from neurotrain_hf.runs.schema import Run

    db = RunsDatabase(f"sqlite:///{tmp_path / 'x.db'}")
    now = utcnow()

    def add(session):
        for name, age in (("old", 600), ("fresh", 5)):
            session.add(
                Run(
                    task="t",
                    name=name,
                    run_dir=f"/elsewhere/{name}",
                    config_toml="",
                    config_hash="",
                    status="running",
                    started_at=now,
                    heartbeat_at=now - timedelta(seconds=age),
                    host="other-host",
                    pid=1,
                )
            )

    db.write(add)
    assert mark_crashed(db) == 1
    with sqlite3.connect(tmp_path / "x.db") as conn:
        assert dict(conn.execute("SELECT name, status FROM runs")) == {"old": "crashed", "fresh": "running"}


def test_a_password_in_the_config_is_refused_and_an_unreachable_database_costs_one_warning(tmp_path, caplog):
    from neurotrain_hf.errors import ConfigError
    from neurotrain_hf.runs.live import LiveRecord

    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, basic={"database": "postgresql+psycopg://me:secret@db.example/runs"})
    assert "holds a password" in str(info.value) and "\n" not in str(info.value)
    config = make_config(tmp_path, basic={"database": "postgresql+psycopg://nobody@127.0.0.1:9/none"})
    record = LiveRecord()
    with caplog.at_level("WARNING"):
        record.start(config, trainer=None)  # the database fails before the trainer is looked at
    assert record.recorder is None
    assert any("the run is not indexed" in r.getMessage() for r in caplog.records)


def test_eight_writers_at_once_into_one_sqlite_file_lose_no_row(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    report = _eight_writers(url, tmp_path)
    with sqlite3.connect(tmp_path / "shared.db") as conn:
        assert conn.execute(
            "SELECT count(*), count(DISTINCT run_dir) FROM runs WHERE status = 'finished'"
        ).fetchone() == (8, 8)
        assert conn.execute("SELECT count(*) FROM metrics WHERE split = 'valid'").fetchone() == (8 * 50 * 10,)
        assert conn.execute("SELECT count(*) FROM metrics WHERE split = 'test'").fetchone() == (8,)
    print(f"sqlite: 8 writers, {report['seconds']:.1f} s, retried transactions {report['retried']}")


def _eight_writers(url: str, folder: Path) -> dict:
    import multiprocessing

    from ..helpers.index_writer import write

    start_at = time.time() + 1.0
    context = multiprocessing.get_context("fork")  # this process has imported the package already
    began = time.time()
    with context.Pool(8) as pool:
        retried = pool.starmap(write, [(url, str(folder), i, 50, start_at) for i in range(8)])
    return {"seconds": time.time() - began, "retried": sum(retried)}


def test_rm_forgets_a_run_and_with_files_deletes_its_folder_unless_it_is_live(runs, tmp_path, capsys):
    import shutil

    from neurotrain_hf.trainer.run_lock import RunLock

    copy = tmp_path / "classification" / "finished"
    shutil.copytree(runs / "classification" / "finished", copy)
    live = tmp_path / "classification" / "live"
    shutil.copytree(runs / "classification" / "finished", live)
    database = str(tmp_path / "copy.db")
    assert main(["runs", "--database", database, "import", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["runs", "--database", database, "list", "--json"]) == 0
    ids = {json.loads(line)["name"]: json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()}
    with RunLock(live):  # a process is training in it
        assert main(["runs", "--database", database, "rm", str(ids["live"]), "--files"]) == 2
        assert "in use by a running process" in capsys.readouterr().err and live.is_dir()
    assert main(["runs", "--database", database, "rm", str(ids["finished"]), "--files"]) == 0
    assert not copy.exists() and live.is_dir()
    with sqlite3.connect(database) as conn:
        left = {table: conn.execute(f"SELECT DISTINCT run_id FROM {table}").fetchall() for table in ("params", "metrics", "artefacts")}
        assert conn.execute("SELECT id FROM runs").fetchall() == [(ids["live"],)]
    assert all(rows == [(ids["live"],)] for rows in left.values()), left

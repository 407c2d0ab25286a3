"""``neurotrain cleanup``: a run killed while saving still resumes after ``--apply``; the best, last, only
complete and named checkpoints stay; a run whose lock a live process holds is untouched (a stale lock file
is not); a dry run deletes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neurotrain_hf.config import load_config
from neurotrain_hf.errors import ConfigError
from neurotrain_hf.runner import run
from neurotrain_hf.tools.cleanup import cleanup, parse_age, report_lines, summary_line
from neurotrain_hf.trainer.checkpointing import COMPLETE_MARKER, last_good_checkpoint, write_json_atomic
from neurotrain_hf.trainer.run_lock import LOCK_NAME, RunLock, is_locked

from ..conftest import run_python, tiny_config_dict, write_toml

HELPER = "tests/helpers/train_until.py"


def tree(root: Path) -> list[tuple[str, int]]:
    """Every file under ``root`` with its size: what a dry run must leave exactly as it was."""
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())


def fake_checkpoint(run_dir: Path, step: int, complete: bool = True, best: int | None = None, marker=True):
    """A checkpoint folder as the trainer leaves it: weights, trainer state, completion marker last."""
    path = run_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"\0" * 1000)
    if complete:
        best_path = str(run_dir / f"checkpoint-{best}") if best else None
        (path / "trainer_state.json").write_text(json.dumps({"best_model_checkpoint": best_path}))
        if marker:
            write_json_atomic(path / COMPLETE_MARKER, {"step": step})
    return path


def planned(result: dict, key: str = "delete") -> set[str]:
    return {Path(item["path"]).name for r in result["runs"] for item in r[key]}


# --- a real run killed while saving ------------------------------------------------------------------------
def test_killed_run_resumes_after_cleanup_apply(tmp_path):
    training = {
        "max_steps": 7,
        "eval_strategy": "steps",
        "eval_steps": 1,
        "save_strategy": "steps",
        "save_steps": 1,
        "save_total_limit": 20,
        "logging_steps": 1,
    }
    data = tiny_config_dict(tmp_path, dataset={"max_samples": 64}, training=training)
    data["training"]["plots"] = False
    path = write_toml(tmp_path / "run.toml", data)
    proc = run_python([HELPER, str(path), "--kill-in-save", "5:optimizer"])  # dies writing checkpoint-5
    assert proc.returncode == -9, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "classification" / "t"
    assert last_good_checkpoint(run_dir).name == "checkpoint-4" and (run_dir / "checkpoint-5").is_dir()
    assert (run_dir / LOCK_NAME).is_file() and not is_locked(run_dir)  # the dead process's flock is gone
    state = run_dir / "checkpoint-4" / "trainer_state.json"  # as if step 2 had scored best
    state.write_text(
        json.dumps({**json.loads(state.read_text()), "best_model_checkpoint": str(run_dir / "checkpoint-2")})
    )
    (run_dir / "checkpoint-final").mkdir()  # a named checkpoint folder
    (run_dir / "checkpoint-final" / "model.safetensors").write_bytes(b"\0" * 10)

    before = tree(tmp_path / "runs")
    dry = cleanup(tmp_path / "runs", keep="best,last,checkpoint-3")
    assert tree(tmp_path / "runs") == before  # a dry run deletes nothing
    assert planned(dry) == {"checkpoint-1", "checkpoint-5"}
    assert planned(dry, "keep") == {"checkpoint-2", "checkpoint-3", "checkpoint-4", "checkpoint-final"}
    assert summary_line(dry).startswith("would delete 2 checkpoints in 1 run, freeing ")
    assert summary_line(dry).endswith("(dry run; --apply to delete)")
    assert any("checkpoint-5" in line and "incomplete" in line for line in report_lines(dry))

    done = cleanup(tmp_path / "runs", keep="best,last,checkpoint-3", apply=True)
    assert planned(done) == {"checkpoint-1", "checkpoint-5"} and not done["errors"]
    assert done["bytes"] == dry["bytes"] > 0
    assert sorted(p.name for p in run_dir.glob("checkpoint*")) == [
        "checkpoint-2",
        "checkpoint-3",
        "checkpoint-4",
        "checkpoint-final",
    ]
    assert not list(run_dir.glob(".deleting-*"))
    # the resume loads checkpoint-4, trains steps 5-7 and loads the best (checkpoint-2) at the end
    run(load_config(path, ["--training.resume_from_checkpoint", "last"]))
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 8))
    assert (run_dir / "model" / "model.safetensors").is_file() and not is_locked(run_dir)


# --- locks ---------------------------------------------------------------------------------------------------
def test_a_run_whose_lock_is_held_is_untouched(tmp_path):
    busy, idle = tmp_path / "runs" / "a" / "busy", tmp_path / "runs" / "a" / "idle"
    for run_dir in (busy, idle):
        for step in (1, 2, 3):
            fake_checkpoint(run_dir, step)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)",
            str(busy / LOCK_NAME),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        (idle / LOCK_NAME).write_text("12345\n")  # a stale file: nobody holds it
        assert is_locked(busy) and not is_locked(idle)
        with pytest.raises(ConfigError, match="holds this run folder's .lock"):
            RunLock(busy).acquire(wait=0.1)
        before = tree(busy)
        for apply in (False, True):
            result = cleanup(tmp_path / "runs", apply=apply)
            assert result["in_progress"] == [str(busy)]
            assert planned(result) == {"checkpoint-1", "checkpoint-2"}  # the idle run's only
            assert "1 run in progress left alone" in summary_line(result)
        assert tree(busy) == before
        assert sorted(p.name for p in idle.glob("checkpoint-*")) == ["checkpoint-3"]
    finally:
        holder.kill()
        holder.wait()
    assert not is_locked(busy)  # released by the OS when its holder died
    assert planned(cleanup(tmp_path / "runs", apply=True)) == {"checkpoint-1", "checkpoint-2"}


def test_the_runner_lock_is_exclusive_and_released(tmp_path):
    lock = RunLock(tmp_path).acquire()
    assert is_locked(tmp_path) and not RunLock(tmp_path).try_acquire(wait=0)
    lock.release()
    assert not is_locked(tmp_path)
    with RunLock(tmp_path):
        assert is_locked(tmp_path)
    assert not is_locked(tmp_path)


# --- what is kept ------------------------------------------------------------------------------------------------
def test_only_complete_best_and_named_checkpoints_stay(tmp_path):
    runs = tmp_path / "runs"
    only = runs / "x" / "only"  # one complete checkpoint and a half-written newer one
    fake_checkpoint(only, 1)
    fake_checkpoint(only, 2, complete=False)
    best = runs / "x" / "best"  # the newest state names checkpoint-1 best
    for step in (1, 2, 3, 4):
        fake_checkpoint(best, step, best=1)
    resumed = runs / "x" / "resumed"  # its config resumed from checkpoint-1 by path: named
    for step in (1, 2, 3):
        fake_checkpoint(resumed, step)
    (resumed / "config.toml").write_text(
        f'[training]\nresume_from_checkpoint = "{resumed / "checkpoint-1"}"\n'
    )
    foreign = runs / "y" / "foreign"  # another trainer's: no markers, complete = state + weights
    for step in (1, 2):
        fake_checkpoint(foreign, step, marker=False)
    fake_checkpoint(foreign, 3, complete=False)
    result = cleanup(runs, apply=True)
    left = {r.name: sorted(p.name for p in r.glob("checkpoint-*")) for r in (only, best, resumed, foreign)}
    assert left == {
        "only": ["checkpoint-1"],
        "best": ["checkpoint-1", "checkpoint-4"],
        "resumed": ["checkpoint-1", "checkpoint-3"],
        "foreign": ["checkpoint-2"],
    }
    assert result["checkpoints"] == 1 + 2 + 1 + 2 and result["runs_affected"] == 4


def test_older_than_spares_recent_checkpoints_and_clears_leftovers(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    for step in (1, 2, 3):
        fake_checkpoint(run_dir, step)
    trash = run_dir / ".deleting-checkpoint-9"  # an interrupted rotation's leftover
    trash.mkdir()
    (trash / "optimizer.pt").write_bytes(b"\0" * 500)
    old = time.time() - 10 * 86400
    for folder in (run_dir / "checkpoint-1", trash):
        for path in (*folder.rglob("*"), folder):
            os.utime(path, (old, old))
    result = cleanup(tmp_path / "runs", older_than="7d")
    assert planned(result) == {"checkpoint-1", ".deleting-checkpoint-9"}
    assert {i["reason"] for r in result["runs"] for i in r["keep"]} >= {"newer than --older-than"}
    assert planned(cleanup(tmp_path / "runs", older_than="1.5h")) == planned(result)
    assert planned(cleanup(tmp_path / "runs")) == {"checkpoint-1", "checkpoint-2", ".deleting-checkpoint-9"}
    assert cleanup(tmp_path / "runs", older_than="30d")["checkpoints"] == 0
    assert summary_line(cleanup(tmp_path / "runs", older_than="30d")) == "nothing to delete in 1 run"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"older_than": "7x"}, "--older-than '7x': expected a number and a unit"),
        ({"older_than": "-1d"}, "--older-than '-1d'"),
        ({"older_than": ""}, "--older-than ''"),
        ({"keep": "best,../x"}, "--keep '../x'"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path, kwargs, message):
    with pytest.raises(ConfigError) as info:
        cleanup(tmp_path, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_missing_runs_dir_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        cleanup(tmp_path / "nope")
    assert parse_age("2w") == 14 * 86400 and parse_age("90s") == 90

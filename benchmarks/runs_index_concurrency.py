"""8 processes writing runs into one SQLite index at once: our settings (WAL, BEGIN IMMEDIATE, busy timeout,
retries) against SQLAlchemy's defaults on the same workload, side by side in one run.

Each writer records a run the way training does (start, an evaluation of 10 metrics every 5 ms, heartbeats
every 20 ms, finish). Prints, per setting: runs and metric rows that landed, writes that failed with
"database is locked", and seconds. Usage: python benchmarks/runs_index_concurrency.py [--writers 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import tempfile
import time
from pathlib import Path

import neurotrain_hf.runs.database as database  # noqa: F401 - imported before the fork


def writer(url: str, folder: str, index: int, evaluations: int, start_at: float, defaults: bool) -> int:
    """One run's writes; returns how many transactions failed (after our retries, or at once with defaults)."""
    from sqlalchemy import create_engine

    from neurotrain_hf.runs.database import RunsDatabase
    from neurotrain_hf.runs.recorder import RunRecorder

    db = RunsDatabase(url)
    if defaults:  # SQLAlchemy's own engine: pysqlite's deferred transactions, 5 s timeout, no retries
        db.engine.dispose()
        db.engine = create_engine(url)
        db.retries = 0
    time.sleep(max(0.0, start_at - time.time()))
    failed = 0
    config = {"basic": {"task": "classification", "run_id": f"w{index}"}}
    recorder = RunRecorder(db, Path(folder) / f"w{index}", "classification", config, "", heartbeat_s=0.02)
    recorder.start()
    for step in range(1, evaluations + 1):
        recorder._broken = False  # count every failed write instead of giving up after the first
        recorder.log_metrics("valid", step, {f"m{k}": float(step + k) for k in range(10)})
        failed += recorder._broken
        time.sleep(0.005)
    recorder._broken = False
    recorder.finish("finished", report={"global_step": evaluations, "test": {"accuracy": 1.0}})
    return failed + recorder._broken


def measure(writers: int, evaluations: int, defaults: bool) -> dict:
    folder = tempfile.mkdtemp(prefix="index-bench-")
    path = Path(folder) / "index.db"
    url = f"sqlite:///{path}"
    database.RunsDatabase(url).close()
    if defaults:
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")
    start_at, began = time.time() + 1.0, time.time()
    with multiprocessing.get_context("fork").Pool(writers) as pool:
        failed = pool.starmap(
            writer, [(url, folder, i, evaluations, start_at, defaults) for i in range(writers)]
        )
    with sqlite3.connect(path) as conn:
        runs = conn.execute("SELECT count(*) FROM runs WHERE status = 'finished'").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM metrics WHERE split = 'valid'").fetchone()[0]
    return {"runs": runs, "rows": rows, "failed": sum(failed), "seconds": time.time() - began - 1.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--evaluations", type=int, default=50)
    args = parser.parse_args()
    expected = args.writers * args.evaluations * 10
    print(f"{args.writers} writers x {args.evaluations} evaluations x 10 metrics = {expected} rows expected")
    for name, defaults in (
        ("neurotrain (WAL, BEGIN IMMEDIATE, retries)", False),
        ("SQLAlchemy defaults", True),
    ):
        r = measure(args.writers, args.evaluations, defaults)
        print(
            f"{name:44} runs {r['runs']}/{args.writers}  rows {r['rows']}/{expected}  "
            f"failed writes {r['failed']}  {r['seconds']:.1f} s"
        )


if __name__ == "__main__":
    main()

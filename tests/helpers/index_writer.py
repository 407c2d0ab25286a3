"""Test helper: ``write(url, index, evaluations)`` records one fake run the way a training run does (start,
an evaluation of 10 metrics every few milliseconds, heartbeats, finish): the concurrency tests start 8 of
these at once into one database."""

from __future__ import annotations

import time
from pathlib import Path


def write(url: str, folder: str, index: int, evaluations: int, start_at: float) -> int:
    from neurotrain_hf.runs.database import RunsDatabase
    from neurotrain_hf.runs.recorder import RunRecorder

    db = RunsDatabase(url)  # opened at the same moment by every writer: a new database migrates once
    time.sleep(max(0.0, start_at - time.time()))
    config = {
        "basic": {"task": "classification", "run_id": f"w{index}"},
        "training": {"learning_rate": index},
    }
    recorder = RunRecorder(
        db, Path(folder) / f"w{index}", "classification", config, f"# writer {index}\n", heartbeat_s=0.02
    )
    recorder.start()
    for step in range(1, evaluations + 1):
        recorder.log_metrics("valid", step, {f"m{k}": index + step / 1000 + k for k in range(10)})
        time.sleep(0.005)
    recorder.finish("finished", report={"global_step": evaluations, "test": {"accuracy": index / 10}})
    assert not recorder._broken, "a write failed"
    return db.retried

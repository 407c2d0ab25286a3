"""Write one run into the index while it trains: a row at start, metrics at each evaluation, a heartbeat,
then its status, final metrics and artefacts at the end.

The run folder stays the source of truth: a database that cannot be reached costs one warning and
the run goes on (``neurotrain runs import`` indexes the folder later).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import socket
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .database import RunsDatabase, safe_url
from .schema import Artefact, Metric, Param, Run

logger = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
STALE_AFTER = timedelta(seconds=4 * HEARTBEAT_S)  # a running row this quiet belongs to a dead process
SKIPPED_METRICS = ("_runtime", "_per_second", "total_flos", "epoch")
SKIPPED_FILES = ("checkpoint-", ".")  # transient checkpoints, staging folders, locks


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"learning_rate": 1e-3}}`` -> ``{"training.learning_rate": 1e-3}`` (tables nest; an
    empty table has no value to keep)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def param_rows(run_id: int, config: dict[str, Any]) -> list[Param]:
    rows = []
    for key, value in sorted(flatten(config).items()):
        if value is None:
            continue
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        text = value if isinstance(value, str) else json.dumps(value)
        rows.append(Param(run_id=run_id, key=key, value=text, number=number))
    return rows


def metric_values(values: dict[str, Any], strip: str = "") -> dict[str, float]:
    """The finite numbers of a log or report section, without timings and counters."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if key.endswith(SKIPPED_METRICS) or key in SKIPPED_METRICS:
            continue
        name = key.removeprefix(strip)
        out[name] = float(value)
    return out


def artefact_kind(relative: str) -> str:
    top = relative.split("/", 1)[0]
    if top in ("model", "adapter", "base") and "/" in relative:
        return "model"
    suffix = Path(relative).suffix.lower()
    return {".png": "plot", ".toml": "config", ".jsonl": "history", ".csv": "table"}.get(suffix, "file")


def artefacts(run_dir: Path) -> list[tuple[str, str, str, int]]:
    """(relative path, kind, sha256, size) of the files a finished run folder keeps."""
    out = []
    for path in sorted(run_dir.rglob("*")):
        relative = path.relative_to(run_dir).as_posix()
        if not path.is_file() or any(part.startswith(SKIPPED_FILES) for part in relative.split("/")):
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(functools.partial(handle.read, 1 << 20), b""):
                digest.update(block)
        out.append((relative, artefact_kind(relative), digest.hexdigest(), path.stat().st_size))
    return out


@functools.cache
def git_commit() -> str | None:
    """The commit of the neurotrain checkout running (None for an installed package)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def metric_rows(run_id: int, split: str, step: int, values: dict[str, float]) -> list[Metric]:
    return [Metric(run_id=run_id, split=split, step=step, name=k, value=v) for k, v in values.items()]


def end_rows(run_id: int, report: dict[str, Any], files: list[tuple[str, str, str, int]]) -> list:
    """What the end of a run adds: its report's training summary and test metrics, and its artefacts."""
    step = int(report.get("global_step") or 0)
    rows: list = metric_rows(run_id, "train", step, metric_values(report.get("train", {}), "train_"))
    rows += metric_rows(run_id, "test", step, metric_values(report.get("test", {})))
    return rows + [Artefact(run_id=run_id, path=p, kind=k, sha256=d, size=n) for p, k, d, n in files]


class RunRecorder:
    """The index row of one run folder (main process only)."""

    def __init__(
        self,
        db: RunsDatabase,
        run_dir: str | Path,
        task: str,
        config: dict[str, Any],
        config_toml: str,
        study: str | None = None,
        trial: int | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.db = db
        self.run_dir = Path(run_dir).resolve()
        self.task, self.config, self.config_toml = task, config, config_toml
        self.study, self.trial = study, trial
        self.heartbeat_s = heartbeat_s
        self.run_id: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._broken = False

    def _safely(self, what: str, work) -> Any:
        if self._broken:
            return None
        try:
            return self.db.write(work)
        except Exception as exc:  # the index is a convenience; the run folder keeps everything
            self._broken = True
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            logger.warning(
                "runs database %s: could not %s (%s); training goes on, index the folder later with "
                "`neurotrain runs import %s`",
                safe_url(self.db.url),
                what,
                first,
                self.run_dir.parent,
            )
            return None

    def start(self, world_size: int = 1, device: str = "cpu") -> int | None:
        """Insert (or, for a resumed run, reopen) the row, store the flattened config, start the heartbeat."""

        def work(session):
            from sqlmodel import delete, select

            row = session.exec(select(Run).where(Run.run_dir == str(self.run_dir))).first()
            now = utcnow()
            fields = dict(
                task=self.task,
                name=self.run_dir.name,
                config_toml=self.config_toml,
                config_hash=hashlib.sha256(self.config_toml.encode()).hexdigest(),
                git_commit=git_commit(),
                status="running",
                error=None,
                ended_at=None,
                heartbeat_at=now,
                host=socket.gethostname(),
                pid=os.getpid(),
                world_size=world_size,
                device=device,
                study=self.study,
                trial=self.trial,
            )
            if row is None:
                row = Run(run_dir=str(self.run_dir), started_at=now, **fields)
                session.add(row)
                session.flush()
            else:
                for key, value in fields.items():
                    setattr(row, key, value)
                for table in (Param, Artefact):
                    session.exec(delete(table).where(table.run_id == row.id))
                session.exec(delete(Metric).where(Metric.run_id == row.id, Metric.split != "valid"))
            session.add_all(param_rows(row.id, self.config))
            return row.id

        self.run_id = self._safely("record the run's start", work)
        if self.run_id is not None and self.heartbeat_s > 0:
            self._thread = threading.Thread(target=self._beat, name="runs-heartbeat", daemon=True)
            self._thread.start()
        return self.run_id

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._update(heartbeat_at=utcnow())

    def _update(self, **fields: Any) -> None:
        if self.run_id is None:
            return

        def work(session):
            row = session.get(Run, self.run_id)
            for key, value in fields.items():
                setattr(row, key, value)

        self._safely("update the run", work)

    def resumed_at(self, step: int) -> None:
        """A resumed run forgets the evaluations a crash left after its checkpoint (as history.jsonl does)."""
        if self.run_id is None:
            return

        def work(session):
            from sqlmodel import delete

            session.exec(delete(Metric).where(Metric.run_id == self.run_id, Metric.step > step))

        self._safely("trim metrics after the checkpoint", work)

    def log_metrics(self, split: str, step: int, values: dict[str, float]) -> None:
        if self.run_id is None or not values:
            return

        def work(session):
            session.add_all(metric_rows(self.run_id, split, step, values))

        self._safely(f"record {split} metrics", work)

    def finish(self, status: str, report: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Stop the heartbeat; write the status, the end time, the final metrics and the artefacts."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.run_id is None:
            return
        files = artefacts(self.run_dir) if report is not None and self.run_dir.is_dir() else []

        def work(session):
            row = session.get(Run, self.run_id)
            row.status, row.error, row.ended_at = status, error, utcnow()
            if report is not None:
                session.add_all(end_rows(self.run_id, report, files))

        self._safely(f"record the run as {status}", work)


class RecorderCallback(TrainerCallback):
    """Feeds the recorder each evaluation (main process), and trims a resumed run's later metrics."""

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and state.global_step > 0:
            self.recorder.resumed_at(state.global_step)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero and metrics:
            evaluation = {k: v for k, v in metrics.items() if k.startswith("eval_")}
            self.recorder.log_metrics("valid", state.global_step, metric_values(evaluation, "eval_"))


def mark_crashed(db: RunsDatabase, stale_after: timedelta = STALE_AFTER) -> int:
    """Running rows whose process is gone (same host, no such pid) or whose heartbeat is stale -> crashed."""
    host, now = socket.gethostname(), utcnow()

    def alive(pid: int | None) -> bool:
        if not pid:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _is_zombie(pid)

    def work(session):
        from sqlmodel import select

        count = 0
        for row in session.exec(select(Run).where(Run.status == "running")).all():
            stale = row.heartbeat_at is None or now - row.heartbeat_at > stale_after
            if (row.host == host and not alive(row.pid)) or stale:
                row.status, row.ended_at = "crashed", row.heartbeat_at or now
                row.error = "the process stopped without ending the run (killed, out of memory, or lost)"
                count += 1
        return count

    return db.write(work)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return False

"""``neurotrain runs import``: index run folders made before the index existed, or on another machine.

A folder with ``config.toml`` becomes the same rows live indexing writes: the config and its params,
the evaluations of ``history.jsonl`` (valid), the training summary and test metrics of ``report.json``,
and the artefacts. Without ``report.json`` the run never finished: it is recorded as crashed.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import tomllib

from ..errors import ConfigError
from .database import RunsDatabase
from .recorder import artefacts, end_rows, metric_rows, metric_values, param_rows
from .schema import Artefact, Metric, Param, Run

logger = logging.getLogger(__name__)
CONFIG = "config.toml"


def run_folders(root: str | Path) -> list[Path]:
    """Run folders under ``root`` (or ``root`` itself): folders with a config.toml, checkpoints left out."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder")
    found = [root] if (root / CONFIG).is_file() else []
    for path in sorted(root.rglob(CONFIG)):
        folder = path.parent
        parts = folder.relative_to(root).parts
        if folder != root and not any(part.startswith(("checkpoint-", ".")) for part in parts):
            found.append(folder)
    return found


def _mtime(path: Path) -> datetime | None:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc) if path.is_file() else None


def import_folder(db: RunsDatabase, folder: Path) -> tuple[int, str]:
    """Index one run folder (replacing its rows if it is there already); returns (run id, status)."""
    from ..trainer.run_lock import is_locked

    folder = folder.resolve()
    text = (folder / CONFIG).read_text(encoding="utf-8")
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{folder / CONFIG}: not TOML ({exc})") from None
    report_path = folder / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else None
    if report is not None:
        status, error = "finished", None
    elif is_locked(folder):
        status, error = "running", None
    else:
        status, error = "crashed", "imported without report.json: the run did not finish"
    history = folder / "history.jsonl"
    evaluations = []
    if history.is_file():
        for line in history.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            values = metric_values({k: v for k, v in row.items() if k.startswith("eval_")}, "eval_")
            if values:
                evaluations.append((int(row.get("step", 0)), values))
    import hashlib

    def work(session):
        from sqlmodel import delete, select

        row = session.exec(select(Run).where(Run.run_dir == str(folder))).first()
        if row is not None:
            for table in (Param, Metric, Artefact):
                session.exec(delete(table).where(table.run_id == row.id))
            session.delete(row)
            session.flush()
        row = Run(
            task=str(config.get("basic", {}).get("task", "")),
            name=folder.name,
            run_dir=str(folder),
            config_toml=text,
            config_hash=hashlib.sha256(text.encode()).hexdigest(),
            git_commit=(report or {}).get("git_commit"),
            status=status,
            error=error,
            started_at=_mtime(folder / CONFIG),
            ended_at=_mtime(report_path),
            host="",
            world_size=int((report or {}).get("world_size") or 1),
            device=str((report or {}).get("device") or ""),
        )
        session.add(row)
        session.flush()
        session.add_all(param_rows(row.id, config))
        for step, values in evaluations:
            session.add_all(metric_rows(row.id, "valid", step, values))
        if report is not None:
            session.add_all(end_rows(row.id, report, artefacts(folder)))
        return row.id, status

    return db.write(work)

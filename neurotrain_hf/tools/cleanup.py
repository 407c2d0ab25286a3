"""``neurotrain cleanup RUNS_DIR``: delete checkpoints nothing needs any more; a dry run unless ``--apply``.

Every run folder under ``RUNS_DIR`` (a folder holding ``checkpoint-N`` folders) loses its superseded and
half-written checkpoints, never: the last complete one (what a resume loads, so also the only complete
one), the best one (``best_model_checkpoint`` of the trainer state), a named one (a folder not called
``checkpoint-N``, one listed in ``--keep``, or the run's ``resume_from_checkpoint`` path), or anything of a
run in progress (a live process holds its ``.lock``: ``trainer/run_lock.py``). Complete means what the
trainer means: its completion marker, written last (``trainer/checkpointing.py``); in a run without markers
(another trainer's), a trainer state and weights. ``--older-than`` spares checkpoints written more recently.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomllib

from ..errors import ConfigError
from ..trainer.checkpointing import checkpoints, discard, is_complete
from ..trainer.run_lock import RunLock, is_locked

KEEP_WORDS = ("best", "last")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
TRASH = ".deleting-checkpoint-"  # what an interrupted rotation leaves (``checkpointing._delete``)


def parse_age(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` (decimals allowed) -> seconds; anything else is one line."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if match is None:
        raise ConfigError(
            f"--older-than {text!r}: expected a number and a unit (s, m, h, d or w), e.g. 7d or 12h"
        )
    return float(match.group(1)) * UNITS[match.group(2)]


def parse_keep(keep: str | Iterable[str]) -> set[str]:
    """``best,last,checkpoint-500`` -> the folder names listed (``best``/``last`` are always kept)."""
    tokens = keep.split(",") if isinstance(keep, str) else list(keep)
    names = set()
    for token in (str(t).strip() for t in tokens):
        if not token or token in KEEP_WORDS:
            continue
        if "/" in token or os.sep in token or token in (".", ".."):
            raise ConfigError(
                f"--keep {token!r}: expected best, last or a checkpoint folder name (e.g. checkpoint-500)"
            )
        names.add(token)
    return names


def _weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in WEIGHTS) or any(folder.glob("global_step*"))


def _size(folder: Path) -> int:
    total = 0
    for base, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(base, name)).st_size
    return total


def _mtime(folder: Path) -> float:
    """When a folder was last written: the newest of it and its files."""
    times = [folder.stat().st_mtime]
    for base, _, files in os.walk(folder):
        times += [os.lstat(os.path.join(base, n)).st_mtime for n in files]
    return max(times)


def find_runs(root: Path) -> list[Path]:
    """Run folders under ``root`` (``root`` itself included): folders holding ``checkpoint-N`` folders or
    leftovers of an interrupted deletion; their insides are not searched."""
    runs = []
    for base, dirs, _ in os.walk(root):
        if any(d.startswith(("checkpoint-", TRASH)) for d in dirs):
            runs.append(Path(base))
            dirs.clear()
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(runs)


def _best_names(run: Path, last: Path | None) -> set[str]:
    """Folder names of the best checkpoint: the newest complete one's trainer state, and report.json."""
    names = set()
    sources = [(last / "trainer_state.json", "best_model_checkpoint")] if last else []
    sources.append((run / "report.json", "best_checkpoint"))
    for path, key in sources:
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if value:
            names.add(Path(str(value)).name)
    return names


def _resume_name(run: Path) -> str | None:
    """The checkpoint the run's config names in ``resume_from_checkpoint`` (a path, not last/auto)."""
    try:
        config = tomllib.loads((run / "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = str((config.get("training") or {}).get("resume_from_checkpoint") or "")
    if value.lower() in ("", "last", "true", "auto"):
        return None
    return Path(value).name


def plan_run(run: Path, keep: set[str], older_than: float | None, now: float) -> dict[str, Any]:
    """What cleanup deletes and keeps in one run folder, with the reason for each."""
    found = checkpoints(run)
    marked = any(is_complete(p) for _, p in found)
    complete = [
        p
        for _, p in found
        if (is_complete(p) if marked else (p / "trainer_state.json").is_file() and _weights(p))
    ]
    last = complete[-1] if complete else None
    best = _best_names(run, last)
    named = keep | ({_resume_name(run)} - {None})
    entry: dict[str, Any] = {"run": str(run), "in_progress": False, "delete": [], "keep": []}
    candidates = [(p, "incomplete" if p not in complete else "superseded") for _, p in found]
    candidates += [(p, "left over from an interrupted deletion") for p in sorted(run.glob(TRASH + "*"))]
    numbered = {p for _, p in found}
    for path in sorted(p for p in run.glob("checkpoint*") if p.is_dir() and p not in numbered):
        entry["keep"].append({"path": str(path), "reason": "named"})
    for path, why in candidates:
        if path == last:
            reason = "last complete (a resume loads it)"
        elif path.name in best:
            reason = "best"
        elif path.name in named:
            reason = "named"
        elif older_than is not None and now - _mtime(path) < older_than:
            reason = "newer than --older-than"
        else:
            entry["delete"].append({"path": str(path), "bytes": _size(path), "reason": why})
            continue
        entry["keep"].append({"path": str(path), "reason": reason})
    return entry


def _in_progress(run: Path) -> dict[str, Any]:
    return {
        "run": str(run),
        "in_progress": True,
        "delete": [],
        "keep": [{"path": str(run), "reason": "in progress"}],
    }


def _delete(entry: dict[str, Any]) -> list[str]:
    errors = []
    for item in entry["delete"]:
        path = Path(item["path"])
        try:
            if path.name.startswith(TRASH):
                shutil.rmtree(path)
            else:
                discard(path)  # renamed out of the checkpoint-N namespace first, then removed
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror or exc}")
            item["error"] = errors[-1]
    return errors


def cleanup(
    runs_dir: str | Path,
    keep: str | Iterable[str] = KEEP_WORDS,
    older_than: str | None = None,
    apply: bool = False,
) -> dict[str, Any]:
    """Plan (and with ``apply``, carry out) the deletions under ``runs_dir``; returns every run's plan, the
    checkpoints and bytes concerned, runs in progress and deletion errors."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise ConfigError(f"{runs_dir}: no such folder")
    age = parse_age(older_than) if older_than is not None else None
    names = parse_keep(keep)
    now, runs, errors = time.time(), [], []
    for run in find_runs(root):
        if not apply:
            runs.append(_in_progress(run) if is_locked(run) else plan_run(run, names, age, now))
            continue
        lock = RunLock(run)
        try:
            if not lock.try_acquire(wait=0):  # training holds it: leave the run alone
                runs.append(_in_progress(run))
                continue
            entry = plan_run(run, names, age, now)  # planned under the lock: nothing starts meanwhile
            errors += _delete(entry)
            runs.append(entry)
        except OSError as exc:  # e.g. a read-only run folder: report it, go on with the others
            errors.append(f"{run}: {exc.strerror or exc}")
        finally:
            lock.release()
    deleted = [d for r in runs for d in r["delete"] if "error" not in d]
    return {
        "runs_dir": str(root),
        "applied": apply,
        "older_than": older_than,
        "runs": runs,
        "checkpoints": len(deleted),
        "bytes": sum(d["bytes"] for d in deleted),
        "runs_affected": sum(1 for r in runs if any("error" not in d for d in r["delete"])),
        "in_progress": [r["run"] for r in runs if r["in_progress"]],
        "errors": errors,
    }


def _size_text(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def report_lines(result: dict[str, Any]) -> list[str]:
    """One line per folder deleted (or to delete), and per run left alone as in progress."""
    verb = "deleted" if result["applied"] else "would delete"
    lines = []
    for run in result["runs"]:
        if run["in_progress"]:
            lines.append(f"in progress, left alone: {run['run']}")
        for item in run["delete"]:
            done = f"failed: {item['error']}" if "error" in item else verb
            lines.append(f"{done} {item['path']} ({_size_text(item['bytes'])}, {item['reason']})")
    return lines


def summary_line(result: dict[str, Any]) -> str:
    """E.g. ``would delete 4 checkpoints in 2 runs, freeing 12.3 MB (dry run; --apply to delete)``."""
    n, runs = result["checkpoints"], result["runs_affected"]
    what = f"{n} checkpoint{'s' * (n != 1)} in {runs} run{'s' * (runs != 1)}"
    if result["applied"]:
        line = f"deleted {what}, freed {_size_text(result['bytes'])}"
    else:
        line = f"would delete {what}, freeing {_size_text(result['bytes'])} (dry run; --apply to delete)"
    if n == 0:
        line = f"nothing to delete in {len(result['runs'])} run{'s' * (len(result['runs']) != 1)}"
    busy = len(result["in_progress"])
    if busy:
        line += f"; {busy} run{'s' * (busy != 1)} in progress left alone"
    if result["errors"]:
        line += f"; {len(result['errors'])} failed (first: {result['errors'][0]})"
    return line

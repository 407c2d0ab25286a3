"""The run folder ``runs/<task>/<run_id>/``: resolved config, metric history, plots and the final report.

History (the MeterRecorder role) is appended to ``history.jsonl`` at every log and mirrored to
``history.csv``; a resumed run keeps the rows up to its checkpoint's step and appends after them.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .checkpointing import write_json_atomic

CONFIG_NAME = "config.toml"
HISTORY_JSONL = "history.jsonl"
HISTORY_CSV = "history.csv"
CURVES_PNG = "training_curves.png"
CONFUSION_PNG = "confusion_matrix.png"
REPORT_JSON = "report.json"
MODEL_DIR = "model"


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / HISTORY_JSONL
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_history_csv(run_dir: str | Path, rows: list[dict[str, Any]]) -> list[str]:
    """Rewrite history.csv with the union of all rows' keys as header; returns the header."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    path = Path(run_dir) / HISTORY_CSV
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return columns


class HistoryRecorder(TrainerCallback):
    """Appends every log to the run folder's history (main process only)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.base_dir = self.run_dir = Path(run_dir)
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        # a hyperparameter-search trial keeps its history in its own folder (``neurotrain tune``)
        self.run_dir = self.base_dir / state.trial_name if state.trial_name else self.base_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # A resumed run continues the history of its checkpoint: drop rows a crash left past it.
        self.rows = [r for r in read_history(self.run_dir) if r.get("step", 0) <= state.global_step]
        with open(self.run_dir / HISTORY_JSONL, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.rows)
        self.columns = write_history_csv(self.run_dir, self.rows) if self.rows else []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, **{k: _jsonable(v) for k, v in logs.items()}}
        self.rows.append(row)
        with open(self.run_dir / HISTORY_JSONL, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.columns and set(row) <= set(self.columns):
            with open(self.run_dir / HISTORY_CSV, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, fieldnames=self.columns).writerow(row)
        else:  # a new column: rewrite the file with the wider header
            self.columns = write_history_csv(self.run_dir, self.rows)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return value


def plot_curves(run_dir: str | Path, rows: list[dict[str, Any]] | None = None) -> Path | None:
    """Loss and evaluation metrics against the step, one panel each."""
    rows = rows if rows is not None else read_history(run_dir)
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key in ("step", "epoch") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key == "loss" or key.startswith("eval_"):
                series.setdefault(key, []).append((row["step"], float(value)))
    series = {k: v for k, v in series.items() if not k.endswith(("_runtime", "_per_second"))}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, points in series.items():
        ax = axes[0] if key.endswith("loss") else axes[1]
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="." if len(xs) < 50 else None, label=key)
    for ax, title in zip(axes, ("loss", "evaluation metrics")):
        ax.set_xlabel("step")
        ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(run_dir) / CURVES_PNG
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(run_dir: str | Path, confusion, label_names: list[str], name: str = CONFUSION_PNG) -> Path:
    """Counts with row-normalised colours (rows: reference, columns: prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(confusion)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(cm)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * n + 2), max(4, 0.5 * n + 2)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), label_names, rotation=90)
        ax.set_yticks(range(n), label_names)
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    fig.tight_layout()
    path = Path(run_dir) / name
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(run_dir: str | Path, report: dict[str, Any]) -> Path:
    path = Path(run_dir) / REPORT_JSON
    write_json_atomic(path, {k: _jsonable(v) if not isinstance(v, dict) else v for k, v in report.items()})
    return path

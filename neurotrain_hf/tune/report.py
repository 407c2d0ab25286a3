"""What a finished search leaves in its study folder: ``best.toml`` (runs as is with ``neurotrain train``),
``trials.csv``, optuna's history, importance and parallel-coordinate plots, ``summary.json``."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from ..config.io import write_config_file
from .search import Study, load_study, optuna_storage

logger = logging.getLogger(__name__)
PLOTS = {
    "history.png": "plot_optimization_history",
    "importance.png": "plot_param_importances",
    "parallel_coordinate.png": "plot_parallel_coordinate",
}


def write_report(study: Study) -> dict[str, Any]:
    """Best config, trial table, plots and summary of the study; returns the summary."""
    import optuna

    current = load_study(study, optuna_storage(study))
    trials = current.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    study.folder.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "study": study.name,
        "storage": _safe(study.storage),
        "metric": study.metric,
        "direction": study.direction,
        "trials": counts,
        "folder": str(study.folder),
    }
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = current.best_trial
        values = {p.key: p.value_of(best.params) for p in study.parameters}
        path = write_config_file(study.best_config(best.params), study.folder / "best.toml")
        summary.update(
            best_trial=best.number, best_value=best.value, best_params=values, best_config=str(path)
        )
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            **t.params,
            "worker": t.user_attrs.get("worker"),
        }
        for t in trials
    ]
    _write_csv(study.folder / "trials.csv", rows)
    summary["plots"] = _plots(current, study.folder) if len(complete) >= 2 else []
    (study.folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _plots(current, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    written = []
    for name, function in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
                axes = getattr(vis, function)(current)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            figure.savefig(folder / name, dpi=90)
            plt.close(figure)
            written.append(name)
        except (ValueError, RuntimeError) as exc:  # e.g. importance of a single parameter value
            logger.info("tune: no %s (%s)", name, exc)
    return written


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _safe(url: str) -> str:
    from ..runs.database import safe_url

    return safe_url(url)


def summary_line(summary: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(summary["trials"].items()))
    if "best_trial" not in summary:
        return f"tune {summary['study']}: no trial completed ({counts or 'no trials'})"
    params = ", ".join(f"{k}={_short(v)}" for k, v in summary["best_params"].items())
    return (
        f"tune {summary['study']}: best trial {summary['best_trial']} with valid {summary['metric']} "
        f"{summary['best_value']:.4f} ({summary['direction']}) at {params}; trials: {counts}; "
        f"best config: {summary['best_config']}"
    )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)

"""``neurotrain analyze runs RUN RUN...``: curves side by side, the final metrics table and, for two runs on
the same test split, a paired bootstrap of the main metric's difference (95% interval) with a paired
sign-flip permutation p-value, so "0.812 vs 0.806" is called what it is."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

ID_COLUMNS = ("sample_id", "index")  # how rows of two runs' per-sample files are paired
REFERENCE_COLUMNS = ("label", "reference", "question")  # equal in both when the test split is the same


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def _history(run: Path) -> list[dict[str, Any]]:
    path = run / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _main_metric(run: Path) -> str:
    """``metric_for_best_model`` of the run's config (``loss`` when unset)."""
    import tomllib

    path = run / "config.toml"
    if not path.is_file():
        return "loss"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return str(data.get("training", {}).get("metric_for_best_model") or "loss").removeprefix("eval_")


def per_sample(
    run: Path, metric: str, fallback: tuple[str, ...] = ()
) -> tuple[str, list[str], np.ndarray, list[tuple]]:
    """(column, row ids, the per-sample values whose mean is ``metric``, reference columns per row) of a
    run's ``test_per_sample.csv``; accuracy-like metrics read the ``correct`` column. A metric no column
    holds (F1, AUC: not means over samples) falls back to the first column named in ``fallback``."""
    path = run / "test_per_sample.csv"
    if not path.is_file():
        raise DataError(f"{run}: no test_per_sample.csv (run `neurotrain test` on it first)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"{path}: no rows")
    column = metric if metric in rows[0] else "correct" if "correct" in rows[0] else None
    column = column or next((c for c in rows[0] if c in fallback), None)
    if column is None:
        raise DataError(
            f"{path}: no per-sample column for {metric!r} (have {', '.join(rows[0])}); choose one with --metric"
        )
    key = next((c for c in ID_COLUMNS if c in rows[0]), None)
    ids = [r[key] if key else str(i) for i, r in enumerate(rows)]
    refs = [tuple(r[c] for c in REFERENCE_COLUMNS if c in r) for r in rows]
    try:
        values = np.array([float(r[column]) for r in rows])
    except ValueError as exc:
        raise DataError(f"{path}: column {column!r} is not numeric ({exc})") from None
    return column, ids, values, refs


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """Mean difference ``a - b`` of paired per-sample values, its 95% percentile-bootstrap interval (samples
    resampled with replacement, pairs kept) and a two-sided paired sign-flip permutation p-value."""
    if a.shape != b.shape or a.size < 2:
        raise ValueError("paired values of equal length (at least 2) are needed")
    rng = np.random.default_rng(seed)
    diff = a - b
    idx = rng.integers(0, diff.size, size=(resamples, diff.size))
    boot = diff[idx].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    signs = rng.choice(np.array([-1.0, 1.0]), size=(resamples, diff.size))
    null = np.abs((signs * diff).mean(axis=1))
    p_value = (1 + int((null >= abs(diff.mean()) - 1e-12).sum())) / (resamples + 1)
    return {
        "difference": float(diff.mean()),
        "low": float(low),
        "high": float(high),
        "p_value": float(p_value),
    }


def _paired(runs: list[Path], metric: str, fallback: tuple[str, ...]) -> dict[str, Any]:
    column, ids_a, a, refs_a = per_sample(runs[0], metric, fallback)
    _, ids_b, b, refs_b = per_sample(runs[1], column)
    if ids_a != ids_b or refs_a != refs_b:
        raise DataError(
            f"{runs[0]} and {runs[1]}: their test_per_sample.csv rows differ (ids or references): "
            "not the same test split, no paired comparison"
        )
    result = paired_bootstrap(a, b)
    result.update(
        metric=metric if column in (metric, "correct") else column,
        samples=int(a.size),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
    )
    return result


def _plot(runs: list[Path], histories: list[list[dict]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for h in histories for row in h for k in row if k == "loss" or k.startswith("eval_")})
    keys = [k for k in keys if not k.endswith(("_runtime", "_per_second"))][:9] or ["loss"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for run, history in zip(runs, histories):
            points = [
                (r.get("step", i), r[key])
                for i, r in enumerate(history)
                if isinstance(r.get(key), (int, float))
            ]
            if points:
                ax.plot(*zip(*points), label=run.name, marker="." if len(points) < 30 else None)
        ax.set_title(key)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "runs_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare_runs(runs: list[str | Path], out_dir: str | Path, metric: str | None = None) -> dict[str, Any]:
    """Curves PNG, metrics table (markdown + JSON) and, for two runs, the paired comparison of ``metric``
    (default: the first run's ``metric_for_best_model``)."""
    paths = [Path(r) for r in runs]
    if len(paths) < 2:
        raise ConfigError("analyze runs: give at least two run folders")
    for path in paths:
        if not (path / "test_metrics.json").is_file() and not (path / "history.jsonl").is_file():
            raise DataError(f"{path}: not a run folder (no test_metrics.json or history.jsonl)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        str(p): _read_json(p / "test_metrics.json") if (p / "test_metrics.json").is_file() else {}
        for p in paths
    }
    explicit = metric is not None
    metric = (metric or _main_metric(paths[0])).removeprefix("test_")
    report: dict[str, Any] = {"runs": [str(p) for p in paths], "metric": metric, "test_metrics": metrics}
    report["curves"] = str(_plot(paths, [_history(p) for p in paths], out))
    if len(paths) == 2:
        # without --metric, a main metric that is not a per-sample mean falls back to a test metric that is
        fallback = () if explicit else tuple(k for k in metrics[str(paths[0])] if k not in ("loss", "split"))
        report["paired"] = _paired(paths, metric, fallback)
    (out / "runs_comparison.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "runs_comparison.md").write_text(table(report), encoding="utf-8")
    return report


def table(report: dict[str, Any]) -> str:
    """The final test metrics of every run as a markdown table (and the paired result under it)."""
    keys = sorted(
        {k for m in report["test_metrics"].values() for k, v in m.items() if isinstance(v, (int, float))}
    )
    lines = ["| run | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for run, values in report["test_metrics"].items():
        cells = [f"{values[k]:.4f}" if isinstance(values.get(k), (int, float)) else "" for k in keys]
        lines.append(f"| {Path(run).name} | " + " | ".join(cells) + " |")
    if "paired" in report:
        lines += ["", paired_line(report["paired"])]
    return "\n".join(lines) + "\n"


def paired_line(p: dict[str, Any]) -> str:
    verdict = "a significant difference" if p["p_value"] < 0.05 else "no significant difference"
    return (
        f"{p['metric']} {p['mean_a']:.4f} vs {p['mean_b']:.4f} on {p['samples']} paired samples: difference "
        f"{p['difference']:+.4f} (95% CI {p['low']:+.4f} to {p['high']:+.4f}, p = {p['p_value']:.3g}): {verdict}"
    )


def summary_line(report: dict[str, Any]) -> str:
    """The paired verdict for two runs, else where the table and curves are."""
    head = paired_line(report["paired"]) if "paired" in report else f"{len(report['runs'])} runs compared"
    return f"{head}; curves: {report['curves']}"

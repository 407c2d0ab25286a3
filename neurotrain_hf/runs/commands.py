"""``neurotrain runs list|show|compare|import|rm``: the index from the command line (docs/runs.md)."""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def add_runs_parser(sub) -> None:
    p = sub.add_parser("runs", help="the runs index: list, show, compare, import or remove runs")
    p.add_argument(
        "--database",
        default=None,
        help="SQLAlchemy URL or SQLite file (default: $NEUROTRAIN_DATABASE, else runs/neurotrain.db)",
    )
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("list", help="runs matching a filter, one line each")
    q.add_argument("--task")
    q.add_argument("--status", choices=("running", "finished", "failed", "halted", "crashed", "pruned"))
    q.add_argument("--study", help="the trials of one tuning study")
    q.add_argument("--where", help='e.g. "test.f1 > 0.8 and training.learning_rate < 1e-3"')
    q.add_argument("--sort", help="a field, a metric (test.f1) or a config key (runs without it last)")
    q.add_argument("--desc", action="store_true", help="sort descending")
    q.add_argument("--json", action="store_true", help="one JSON object per run")
    q = actions.add_parser("show", help="one run: fields, config values, last metrics, artefacts")
    q.add_argument("id", type=int)
    q.add_argument("--json", action="store_true")
    q = actions.add_parser("compare", help="runs side by side: differing config, metrics, curves PNG")
    q.add_argument("ids", type=int, nargs="+")
    q.add_argument("--out", default="analysis/compare", help="folder for curves.png")
    q = actions.add_parser("import", help="index run folders (made before, or elsewhere)")
    q.add_argument("folder", help="a runs root, a task folder or one run folder")
    q = actions.add_parser("rm", help="remove runs from the index (and their folders with --files)")
    q.add_argument("ids", type=int, nargs="+")
    q.add_argument("--files", action="store_true", help="also delete the run folders")
    p.set_defaults(handler=run_command)


def open_index(args: argparse.Namespace):
    from .database import open_database, resolve_url
    from .recorder import mark_crashed

    url = resolve_url(args.database, "runs", from_config=False)
    if url is None:
        raise ConfigError("runs: the index is turned off ($NEUROTRAIN_DATABASE=none); pass --database URL")
    if url.startswith("sqlite") and args.action != "import":
        path = Path(url.split(":///", 1)[1])
        if not path.is_file():
            raise ConfigError(f"runs: no index at {path} (train a run, `runs import FOLDER`, or --database)")
    db = open_database(url)
    mark_crashed(db)
    return db


def run_command(args: argparse.Namespace) -> int:
    db = open_index(args)
    return {"list": _list, "show": _show, "compare": _compare, "import": _import, "rm": _rm}[args.action](
        db, args
    )


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _list(db, args) -> int:
    from .query import field_expression, field_names, select_runs

    sort = f"-{args.sort}" if args.sort and args.desc else args.sort
    runs = select_runs(db, args.where, sort, task=args.task, status=args.status, study=args.study)
    extra = field_names(args.where, sort)
    values = _field_values(db, [r.id for r in runs], extra, field_expression)
    if args.json:
        for run in runs:
            print(json.dumps({**_summary(run), **values.get(run.id, {})}))
        return 0
    header = ["id", "task", "name", "status", "started", "seconds", *extra]
    rows = [
        [
            str(r.id),
            r.task,
            r.name if r.trial is None else f"{r.study}/{r.name}",
            r.status,
            _time(r.started_at),
            _number(round((r.ended_at - r.started_at).total_seconds(), 1)) if r.ended_at else "",
            *(_number(values.get(r.id, {}).get(name)) for name in extra),
        ]
        for r in runs
    ]
    _table(header, rows)
    print(f"{len(runs)} run(s)")
    return 0


def _field_values(db, ids: list[int], names: list[str], field_expression) -> dict[int, dict[str, Any]]:
    if not ids or not names:
        return {}
    from sqlmodel import select

    from .schema import Run

    columns = [field_expression(name).label(f"f{i}") for i, name in enumerate(names)]
    statement = select(Run.id, *columns).where(Run.id.in_(ids))
    rows = db.read(lambda session: session.exec(statement).all())
    return {row[0]: dict(zip(names, row[1:])) for row in rows}


def _summary(run) -> dict[str, Any]:
    return {
        "id": run.id,
        "task": run.task,
        "name": run.name,
        "status": run.status,
        "run_dir": run.run_dir,
        "started_at": _time(run.started_at),
        "ended_at": _time(run.ended_at),
        "study": run.study,
        "trial": run.trial,
        "error": run.error,
    }


def run_details(db, run_id: int) -> dict[str, Any]:
    """Everything the index holds on one run; an unknown id is one line."""
    from sqlmodel import select

    from .schema import Artefact, Metric, Param, Run

    def work(session):
        run = session.get(Run, run_id)
        if run is None:
            raise ConfigError(f"runs: no run with id {run_id} (`neurotrain runs list` shows them)")
        params = session.exec(select(Param).where(Param.run_id == run_id).order_by(Param.key)).all()
        metrics = session.exec(
            select(Metric).where(Metric.run_id == run_id).order_by(Metric.step, Metric.id)
        ).all()
        files = session.exec(select(Artefact).where(Artefact.run_id == run_id).order_by(Artefact.path)).all()
        return run, params, metrics, files

    run, params, metrics, files = db.read(work)
    last: dict[str, dict[str, float]] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    for m in metrics:
        last.setdefault(m.split, {})[m.name] = m.value
        if m.split == "valid":
            curves.setdefault(m.name, []).append((m.step, m.value))
    return {
        **_summary(run),
        "host": run.host,
        "pid": run.pid,
        "world_size": run.world_size,
        "device": run.device,
        "git_commit": run.git_commit,
        "config_hash": run.config_hash,
        "params": {p.key: p.number if p.number is not None else p.value for p in params},
        "metrics": last,
        "curves": curves,
        "artefacts": [{"path": f.path, "kind": f.kind, "sha256": f.sha256, "size": f.size} for f in files],
    }


def _show(db, args) -> int:
    details = run_details(db, args.id)
    if args.json:
        print(json.dumps(details))
        return 0
    for key in (
        "id",
        "task",
        "name",
        "status",
        "error",
        "run_dir",
        "started_at",
        "ended_at",
        "study",
        "trial",
    ):
        if details[key] not in (None, ""):
            print(f"{key}: {details[key]}")
    for key in ("host", "world_size", "device", "git_commit"):
        print(f"{key}: {details[key]}")
    for split, values in details["metrics"].items():
        print(f"{split}: " + ", ".join(f"{k}={_number(v)}" for k, v in values.items()))
    print(f"artefacts: {len(details['artefacts'])} files")
    for item in details["artefacts"]:
        print(f"  {item['kind']:7} {item['path']} ({item['size']} bytes, sha256 {item['sha256'][:12]})")
    return 0


def _compare(db, args) -> int:
    runs = [run_details(db, run_id) for run_id in args.ids]
    keys = sorted({k for r in runs for k in r["params"]})
    differing = [k for k in keys if len({json.dumps(r["params"].get(k)) for r in runs}) > 1]
    header = ["", *(f"#{r['id']} {r['name']}" for r in runs)]
    rows = [[key, *(_number(r["params"].get(key)) for r in runs)] for key in differing]
    for split in ("valid", "test"):
        names = sorted({n for r in runs for n in r["metrics"].get(split, {})})
        rows += [
            [f"{split}.{n}", *(_number(r["metrics"].get(split, {}).get(n)) for r in runs)] for n in names
        ]
    _table(header, rows)
    path = plot_curves(runs, Path(args.out))
    print(f"curves: {path}" if path else "curves: no run has evaluations")
    return 0


def plot_curves(runs: list[dict[str, Any]], out: Path) -> Path | None:
    """One panel per validation metric, one line per run."""
    names = sorted({n for r in runs for n in r["curves"]})
    if not names:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for run in runs:
            points = run["curves"].get(name)
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker=".", label=f"#{run['id']} {run['name']}")
        ax.set_title(f"valid {name}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _import(db, args) -> int:
    from .folders import import_folder, run_folders

    counts: dict[str, int] = {}
    for folder in run_folders(args.folder):
        run_id, status = import_folder(db, folder)
        counts[status] = counts.get(status, 0) + 1
        print(f"{run_id}\t{status}\t{folder}")
    total = sum(counts.values())
    print(f"imported {total} run folder(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return 0


def _rm(db, args) -> int:
    from sqlmodel import delete

    from ..trainer.run_lock import is_locked
    from .schema import Artefact, Metric, Param, Run

    for run_id in args.ids:
        details = run_details(db, run_id)
        folder = Path(details["run_dir"])
        if args.files and folder.is_dir() and is_locked(folder):
            raise ConfigError(f"runs rm {run_id}: {folder} is in use by a running process; stop it first")

        def work(session, run_id=run_id):
            for table in (Param, Metric, Artefact):
                session.exec(delete(table).where(table.run_id == run_id))
            session.exec(delete(Run).where(Run.id == run_id))

        db.write(work)
        if args.files and folder.is_dir():
            shutil.rmtree(folder)
        print(f"removed run {run_id}" + (f" and {folder}" if args.files else ""))
    return 0


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)] if rows else map(len, header)
    widths = list(widths)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())

"""``neurotrain tune CONFIG [--trials N] [--workers K] [--storage URL] [--study NAME]`` (docs/tune.md)."""

from __future__ import annotations

import argparse
import os

from ..errors import ConfigError


def add_tune_parser(sub) -> None:
    p = sub.add_parser("tune", help="hyperparameter search over the config's [tune] space (optuna)")
    p.add_argument("config")
    p.add_argument("--trials", type=int, help="trials in all (default: [tune] trials)")
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes on this machine sharing the study"
    )
    p.add_argument("--storage", help="study database URL (default: [tune] storage, else the runs database)")
    p.add_argument("--study", help="study name (default: [tune] study, else [basic] run_id)")
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs=argparse.REMAINDER)
    p.set_defaults(handler=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from ..tools.commands import options_after_config
    from .report import summary_line, write_report
    from .search import load_study, optuna_storage, resolve_study, spawn_workers, work

    options_after_config(
        args, {"trials": int, "workers": int, "storage": str, "study": str, "worker_index": int}
    )
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.workers > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--workers > 1 starts processes of its own: not under `accelerate launch`")
    study = resolve_study(args.config, args.overrides, args.trials, args.storage, args.study)
    main = int(os.environ.get("RANK", "0")) == 0
    workers = []
    if args.workers > 1:
        load_study(study, optuna_storage(study))  # created once, before the workers race for it
        argv = ["tune", args.config, "--trials", str(study.settings.trials), "--storage", study.storage]
        workers = spawn_workers([*argv, "--study", study.name, *args.overrides], args.workers - 1)
    from ..runner import shutdown_distributed

    try:
        work(study, args.worker_index)
    finally:
        shutdown_distributed()
    failed = [i + 1 for i, proc in enumerate(workers) if proc.wait() != 0]
    if failed:
        raise ConfigError(f"tune: worker(s) {failed} exited with an error (their output is above)")
    if main and args.worker_index == 0:
        summary = write_report(study)
        print(f"study folder: {study.folder}")
        print(summary_line(summary))
    return 0

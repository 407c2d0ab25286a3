"""Experiment trackers in ``[training] report_to``: MLflow, trackio and TensorBoard, local and offline by default.

transformers' own callbacks log the training and evaluation logs; ``tracking`` points them at the experiment
folder's stores for one run, then restores the environment and the libraries' process-wide state (two runs in
one process never share a store); ``finish_trackers`` adds what exists only at the end (docs/trackers.md)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.io import read_config_file
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config.experiment import ExperimentConfig

logger = logging.getLogger(__name__)

TRACKERS = ("mlflow", "trackio", "tensorboard")
RUN_FILES = ("config.toml", "report.json", "README.md", "model/README.md")  # besides the plots (*.png)
_ENV_PREFIXES = ("MLFLOW_", "TRACKIO_", "TENSORBOARD_")


def trackers_of(args: Any) -> list[str]:
    """Our trackers among ``report_to`` (TrainingArguments has already turned "all"/"none" into a list)."""
    wanted = [args.report_to] if isinstance(args.report_to, str) else args.report_to or []
    return [name for name in TRACKERS if name in wanted]


@contextlib.contextmanager
def tracking(config: ExperimentConfig) -> Iterator[None]:
    """Local stores for the trackers of one run (MLflow: ``<output_dir>/mlflow.db``, trackio:
    ``<output_dir>/trackio``, TensorBoard: ``<run folder>/tensorboard``); a user's own settings win."""
    args, names = config.training, trackers_of(config.training)
    missing = [name for name in names if find_spec(name) is None]
    if missing:
        hint = "is not installed: pip install 'neurotrain-hf[trackers]'"
        raise ConfigError(f"{config.source}: [training] report_to names {', '.join(missing)}, which {hint}")
    remote = bool(args.trackio_space_id or {"TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL"} & set(os.environ))
    if names:
        if args.run_name is None:
            args.run_name = config.basic.run_id
        if "project" not in config.training_keys:
            args.project = f"neurotrain-{config.basic.task}"
        if not remote and args.trackio_static_space_id is None:
            args.trackio_static_space_id = False  # no Space is made on a Hub push either
    saved = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
    # mlflow reports usage over the network unless told not to; DeepSpeed imports it even without report_to
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    root, main = Path(config.basic.output_dir).resolve(), os.environ.get("RANK", "0") == "0"
    tensorboard_dir = str(config.run_dir.resolve() / "tensorboard")
    try:
        with contextlib.ExitStack() as stack:  # the other ranks' callbacks log nothing
            if main and "tensorboard" in names:
                os.environ.setdefault("TENSORBOARD_LOGGING_DIR", tensorboard_dir)
            if main and "mlflow" in names:
                stack.enter_context(_mlflow_local(root, args.project))
            if main and "trackio" in names:
                stack.enter_context(_trackio_local(root / "trackio", remote))
            yield
    finally:
        for key in [k for k in os.environ if k.startswith(_ENV_PREFIXES) and k not in saved]:
            del os.environ[key]
        os.environ.update(saved)


@contextlib.contextmanager
def _mlflow_local(root: Path, experiment: str) -> Iterator[None]:
    """``sqlite:///<root>/mlflow.db`` (artefacts in ``<root>/mlartifacts``) unless a tracking URI is set;
    MLflow's process-wide URI, experiment and a run left open by a failure are reset afterwards."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import fluent

    ours = not mlflow.is_tracking_uri_set() and mlflow.active_run() is None  # else: where that run lives
    if not (os.environ.get("MLFLOW_EXPERIMENT_NAME") or os.environ.get("MLFLOW_EXPERIMENT_ID")):
        os.environ["MLFLOW_EXPERIMENT_NAME"] = experiment
    if ours:
        os.environ["MLFLOW_TRACKING_URI"] = uri = f"sqlite:///{root / 'mlflow.db'}"  # for MLflowCallback
        client, name = mlflow.MlflowClient(uri), os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if name and client.get_experiment_by_name(name) is None:  # else artefacts would go to ./mlruns
            with contextlib.suppress(MlflowException):  # made meanwhile by another run
                client.create_experiment(name, artifact_location=(root / "mlartifacts").as_uri())
    logger.info("MLflow: %s", os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri())
    experiment_id, open_run, status = fluent._active_experiment_id, mlflow.active_run(), "FAILED"
    try:
        yield
        status = "FINISHED"
    finally:
        if mlflow.active_run() is not None and mlflow.active_run() is not open_run:
            mlflow.end_run(status)
        mlflow.flush_async_logging()
        fluent._active_experiment_id = experiment_id
        if ours:
            mlflow.set_tracking_uri(None)


@contextlib.contextmanager
def _trackio_local(default_dir: Path, remote: bool) -> Iterator[None]:
    """trackio's folder (``TRACKIO_DIR`` if set, else ``default_dir``), and for a local run no Hub lookup.

    trackio reads ``TRACKIO_DIR`` once, at import, into module constants: they are pointed at this run's
    folder and restored after. A local run would still ask the Hub who the user is (``whoami``)."""
    import trackio

    store = Path(os.environ.get("TRACKIO_DIR") or default_dir).resolve()
    values = {"TRACKIO_DIR": store, "MEDIA_DIR": store / "media", "ARTIFACTS_DIR": store / "artifacts"}
    if not remote:
        values["_get_default_namespace"] = _no_hub_lookup
    originals = {name: getattr(trackio.utils, name) for name in values}
    _swap_trackio(originals, values)
    try:
        yield
    finally:
        if trackio.context_vars.current_run.get() is not None:  # its threads write until finished
            trackio.finish()
        _swap_trackio(values, originals)


def _swap_trackio(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Replace ``old`` values by ``new`` ones wherever a trackio module holds them (``from x import Y``)."""
    for name, module in list(sys.modules.items()):
        if module is not None and (name == "trackio" or name.startswith("trackio.")):
            for attr, value in old.items():
                if attr in vars(module) and (vars(module)[attr] is value or vars(module)[attr] == value):
                    setattr(module, attr, new[attr])


def _no_hub_lookup() -> str:
    raise RuntimeError("local trackio run: the Hub is not asked for a user name")


def finish_trackers(config: ExperimentConfig, run_dir: Path, report: dict[str, Any]) -> None:
    """At the end of a run (main process): the resolved config as params, the test metrics, and the
    plots, ``config.toml``, ``report.json`` and model card to each tracker in ``report_to``."""
    names = trackers_of(config.training)
    if not names:
        return
    run_dir = Path(run_dir)
    toml = run_dir / "config.toml"
    params = _flatten(read_config_file(toml) if toml.is_file() else config.to_dict(), "config")
    files = sorted(run_dir.glob("*.png")) + [run_dir / f for f in RUN_FILES if (run_dir / f).is_file()]
    finish = {"mlflow": _finish_mlflow, "trackio": _finish_trackio, "tensorboard": _finish_tensorboard}
    for name in names:
        try:
            finish[name](config, run_dir, report, params, files)
        except Exception as exc:  # the run folder is complete; a tracker failing now must not hide that
            logger.warning("%s: could not record the config, test metrics and files: %s", name, exc)


def _test_metrics(report: dict[str, Any]) -> dict[str, float]:
    test = report.get("test") or {}
    return {k: float(v) for k, v in test.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _flatten(data: dict[str, Any], prefix: str) -> dict[str, str]:
    """``{"training": {"learning_rate": 0.003}}`` -> ``{"config.training.learning_rate": "0.003"}``."""
    from ..runs.recorder import flatten

    return {
        f"{prefix}.{key}": value if isinstance(value, str) else json.dumps(value, default=str)
        for key, value in flatten(data).items()
    }


def _finish_mlflow(config, run_dir, report, params, files) -> None:
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

    mlflow.flush_async_logging()
    run = mlflow.active_run() or mlflow.last_active_run()  # MLflowCallback ended its run at train end
    if run is None:
        raise RuntimeError("no MLflow run was started")
    client, run_id, logged = mlflow.MlflowClient(), run.info.run_id, run.data.params
    clean = {re.sub(r"[^0-9A-Za-z_\-. /]", "_", k): v for k, v in params.items()}
    ok = [(k, v) for k, v in clean.items() if len(k) <= 250 and len(v) <= MAX_PARAM_VAL_LENGTH]
    kept = [Param(k, v) for k, v in ok if logged.get(k, v) == v]  # a resumed run keeps its first values
    for i in range(0, len(kept), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=kept[i : i + MAX_PARAMS_TAGS_PER_BATCH])
    now, step = int(time.time() * 1000), int(report.get("global_step") or 0)
    metrics = [Metric(f"test_{k}", v, now, step) for k, v in _test_metrics(report).items()]
    client.log_batch(run_id, metrics=metrics)
    for path in files:
        parent = path.parent.relative_to(run_dir).as_posix()
        client.log_artifact(run_id, str(path), artifact_path=None if parent == "." else parent)


def _finish_trackio(config, run_dir, report, params, files) -> None:
    import trackio

    args = config.training
    run = trackio.context_vars.current_run.get()
    # The Tester's predict re-opens the run (TrackioCallback.on_predict) and logs test/<name> itself.
    reopened = run is not None and (run.project, run.name) == (args.project, args.run_name)
    if run is not None:
        trackio.finish()  # flushed; a run sends its config with its first log only: a fresh one follows
    stored = None
    with contextlib.suppress(ValueError):  # no local project: the callback logged to a Space
        stored = next((r.config for r in trackio.Api().runs(args.project) if r.name == args.run_name), None)
    trackio.init(
        project=args.project,
        name=args.run_name,
        space_id=args.trackio_space_id,
        bucket_id=args.trackio_bucket_id,
        private=args.hub_private_repo,
        resume="allow",
        config={**{k: v for k, v in (stored or {}).items() if not k.startswith("_")}, **params},
        auto_log_cpu=False,
        auto_log_gpu=False,
    )
    logs: dict[str, Any] = {f"plots/{p.stem}": trackio.Image(str(p)) for p in files if p.suffix == ".png"}
    if not (reopened and (report.get("test") or {}).get("split") == "test"):
        logs.update({f"test/{k}": v for k, v in _test_metrics(report).items()})
    trackio.log(logs)
    artifact = trackio.Artifact(re.sub(r"[^A-Za-z0-9._-]", "_", f"{args.run_name}-run-files"), "run-files")
    for path in files:
        artifact.add_file(path, name=path.relative_to(run_dir).as_posix())
    trackio.log_artifact(artifact)
    trackio.finish()


def _finish_tensorboard(config, run_dir, report, params, files) -> None:
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    log_dir = os.path.expanduser(os.environ.get("TENSORBOARD_LOGGING_DIR") or run_dir / "tensorboard")
    toml, step = run_dir / "config.toml", int(report.get("global_step") or 0)
    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for name, value in _test_metrics(report).items():
            writer.add_scalar(f"test/{name}", value, step)
        if toml.is_file():
            writer.add_text("config", f"```toml\n{toml.read_text(encoding='utf-8')}\n```", step)
        for path in (p for p in files if p.suffix == ".png"):
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            writer.add_image(f"plots/{path.stem}", pixels, step, dataformats="HWC")

"""The search loop: ``Trainer.hyperparameter_search`` one trial at a time on a shared optuna study.

One trial per call lets every worker (and a resumed search) check the study's count first, so the
study ends at ``[tune] trials`` however many workers share it. Under ``accelerate launch`` rank 0
samples and broadcasts each trial (transformers' optuna backend) and its go/stop decision (here).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import load_config
from ..config.experiment import ExperimentConfig, build_config
from ..errors import ConfigError, NeuroTrainError, first_line
from ..runs.database import safe_url
from .space import Parameter, TuneSettings, apply_values, parse_tune, training_attribute

logger = logging.getLogger(__name__)
LAUNCH_ENV = "NEUROTRAIN_TUNE_LAUNCH"  # "<id>:<workers>" for workers started by one `--workers K`
MAX_FAILURES = 5  # trials failing one after another: the search stops with the last error
COUNTED = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")  # FAIL trials (dead workers, NaN) are run again


@dataclass
class Study:
    """A resolved search: the base config, its space, where the study and its trials live."""

    config: ExperimentConfig
    settings: TuneSettings
    parameters: list[Parameter]
    name: str
    storage: str
    folder: Path
    direction: str
    metric: str

    def base(self) -> dict[str, Any]:
        """The config every trial starts from: no [tune], no checkpoints (the best config retrains)."""
        data = {k: v for k, v in self.config.to_dict().items() if k != "tune"}
        data["basic"]["run_id"] = self.name
        data["training"].update(save_strategy="no", load_best_model_at_end=False)
        data["training"].pop("resume_from_checkpoint", None)
        return data

    def trial_config(self, params: dict[str, Any], number: int | None) -> dict[str, Any]:
        values = {p.key: p.value_of(params) for p in self.parameters if p.key in params}
        data = apply_values(self.base(), values)
        data["basic"]["run_id"] = f"{self.name}/trial-{number}"
        return data

    def best_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """The best trial's values in the full config, checkpoints as configured: runs as is."""
        data = {k: v for k, v in self.config.to_dict().items() if k != "tune"}
        data = apply_values(data, {p.key: p.value_of(params) for p in self.parameters})
        data["basic"]["run_id"] = f"{self.name}-best"
        return data


def resolve_study(
    path: str, overrides: list[str], trials: int | None, storage: str | None, name: str | None
) -> Study:
    """Read the config and its [tune] section; the command line's --trials/--storage/--study win."""
    from ..runs.database import resolve_url

    config = load_config(path, overrides)
    if "tune" not in config.extra:
        raise ConfigError(f"{path}: no [tune] section (docs/tune.md shows one)")
    settings, parameters = parse_tune(config.extra["tune"], config.source)
    settings.trials = trials or settings.trials
    metric = config.training.metric_for_best_model
    if not metric:
        raise ConfigError(f"{path}: [training] metric_for_best_model: tune needs the metric to optimise")
    better = config.training.greater_is_better
    if better is None:
        better = not metric.endswith("loss")
    study_name = name or settings.study or config.basic.run_id
    folder = Path(config.basic.output_dir) / config.basic.task / study_name
    url = storage or settings.storage or resolve_url(config.basic.database, config.basic.output_dir)
    url = url or f"sqlite:///{folder.resolve() / 'study.db'}"
    check_values(config, parameters)
    return Study(
        config,
        settings,
        parameters,
        study_name,
        url,
        folder,
        "maximize" if better else "minimize",
        metric.removeprefix("eval_"),
    )


def check_values(config: ExperimentConfig, parameters: list[Parameter]) -> None:
    """Every choice (and both ends of every range) must make a valid config: an unknown model name or key
    is one line now, not a failed trial an hour in."""
    from ..models import MODELS

    base = {k: v for k, v in config.to_dict().items() if k != "tune"}
    for parameter in parameters:
        values = parameter.choices if parameter.choices is not None else [parameter.low, parameter.high]
        for value in values:
            try:
                trial = build_config(apply_values(base, {parameter.key: value}), source=config.source)
                if parameter.key.startswith("model"):  # names the model registry resolves, unbuilt
                    MODELS.get(trial.model.name)
            except NeuroTrainError as exc:
                message = str(exc).removeprefix(f"{config.source}: ")
                raise ConfigError(f"{config.source}: [tune] {parameter.key} = {value!r}: {message}") from None


def optuna_storage(study: Study):
    """Optuna's RDB storage on the study URL, with heartbeats: a killed worker's trial turns FAIL."""
    import optuna

    engine: dict[str, Any] = {}
    if study.storage.startswith("sqlite"):
        Path(study.storage.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        engine = {"connect_args": {"timeout": 60}}
    beat = max(1, int(study.settings.heartbeat_s))
    return optuna.storages.RDBStorage(
        study.storage, engine_kwargs=engine, heartbeat_interval=beat, grace_period=2 * beat
    )


def fail_dead_trials(loaded: Any, storage: Any, grace_s: float) -> None:
    """Stale trials turn FAIL (optuna's heartbeat), and so do RUNNING trials that never beat once and
    started over ``grace_s`` ago: a worker killed between optuna's ask and its first heartbeat leaves one,
    and optuna skips trials without a heartbeat, so the study would count it forever.

    ``loaded`` is the optuna study, ``storage`` its ``RDBStorage``. The query reads optuna's RDB schema
    (tables trials, studies, trial_heartbeats; state names), stable since optuna 2 but not a public API:
    tests/tune/test_tune.py checks it against the installed optuna."""
    from datetime import datetime, timedelta

    import optuna
    import sqlalchemy

    optuna.storages.fail_stale_trials(loaded)
    query = sqlalchemy.text(
        "SELECT t.trial_id, t.datetime_start FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "WHERE s.study_name = :name AND t.state = 'RUNNING' "
        "AND t.trial_id NOT IN (SELECT trial_id FROM trial_heartbeats)"
    )
    with storage.engine.connect() as conn:
        silent = conn.execute(query, {"name": loaded.study_name}).all()
    oldest = datetime.now() - timedelta(seconds=grace_s)  # optuna stamps trials with naive local time
    for trial_id, start in silent:
        start = datetime.fromisoformat(start) if isinstance(start, str) else start
        if start is not None and start < oldest:
            with suppress(optuna.exceptions.UpdateFinishedTrialError):  # another worker got there first
                storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)


def load_study(study: Study, storage):
    """The study, created on first use; one of the same name made for another task or metric is refused."""
    import optuna

    current = optuna.create_study(
        study_name=study.name, storage=storage, direction=study.direction, load_if_exists=True
    )
    owner = {"task": study.config.basic.task, "metric": study.metric}
    found = {key: current.user_attrs.get(key) for key in owner}
    if found == {"task": None, "metric": None}:
        for key, value in owner.items():
            current.set_user_attr(key, value)
    elif found != owner or current.direction.name.lower() != study.direction:
        raise ConfigError(
            f"study {study.name!r} in {safe_url(study.storage)} searches {found['task']} {found['metric']} "
            f"({current.direction.name.lower()}); name this one with [tune] study or --study"
        )
    return current


def _pruner(study: Study, world_size: int):
    import optuna

    if study.settings.pruner == "none":
        return optuna.pruners.NopPruner()
    if world_size > 1:
        logger.warning(
            "[tune] pruner %s is off with %d processes: transformers prunes on rank 0 only, and the other "
            "ranks would wait for it forever",
            study.settings.pruner,
            world_size,
        )
        return optuna.pruners.NopPruner()
    if study.settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.MedianPruner(n_startup_trials=study.settings.startup_trials)


def _broadcast(value: Any) -> Any:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return value


def work(study: Study, worker: int = 0, callbacks: list | None = None) -> int:
    """Run trials until the study holds ``trials`` of them; returns how many this process ran."""
    from ..trainer.trackers import tracking

    base = build_config(study.base(), source=study.config.source)
    with tracking(base):  # report_to's trackers write to the experiment's local stores, as for a run
        return _trials(study, base, worker, callbacks)


def _trials(study: Study, base: ExperimentConfig, worker: int, callbacks: list | None) -> int:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial instead
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    from transformers import set_seed

    from ..runner import build, build_model
    from ..runs.database import resolve_url
    from ..runs.live import run_status
    from .trials import TRIAL_STATUS, TrialRecorder

    url = resolve_url(study.config.basic.database, study.config.basic.output_dir)
    recorder = TrialRecorder(study.folder, study.name, study.trial_config, url)
    task, data, trainer = build(base, callbacks=[recorder, *(callbacks or [])])
    main = trainer.is_world_process_zero()

    current: dict[str, Any] = {"number": None}

    def model_init(trial):
        current["number"] = trial.number
        space(study, trial)  # transformers 5 builds the model before it samples the trial's arguments
        config = build_config(study.trial_config(trial.params, trial.number), source=study.config.source)
        model = build_model(config, task, data)
        # `neurotrain train` seeds again after building the model (Trainer.__init__): the same dropout and
        # sampling from here on, so the best config retrains to the best trial's numbers
        set_seed(config.training.seed)
        return model

    trainer.model_init = model_init
    storage = optuna_storage(study) if main else None
    if main and url:
        from ..runs.database import open_database
        from ..runs.recorder import mark_crashed

        mark_crashed(open_database(url))  # the trials of a killed worker, before this one resumes
    pruner = _pruner(study, trainer.accelerator.num_processes)
    if main and os.environ.get(LAUNCH_ENV):
        wait_for_workers(study, storage, worker)
    ran, failures, error = 0, 0, None
    while True:
        go = failures < MAX_FAILURES
        if main and go:
            loaded = load_study(study, storage)
            fail_dead_trials(loaded, storage, storage.grace_period)
            go = len(loaded.get_trials(deepcopy=False, states=_states(COUNTED))) < study.settings.trials
            seed = (study.settings.sampler_seed or 0) + 1000 * worker + len(loaded.trials)
        if not _broadcast(go):
            break
        kwargs = {}
        if main:
            sampler = optuna.samplers.TPESampler(seed=seed)
            kwargs = dict(
                storage=storage, study_name=study.name, load_if_exists=True, pruner=pruner, sampler=sampler
            )
        current["number"], error, status = None, None, None
        try:
            trainer.hyperparameter_search(
                hp_space=lambda trial: space(study, trial, worker),
                compute_objective=lambda metrics: metrics[f"eval_{study.metric}"],
                n_trials=1,
                direction=study.direction,
                backend="optuna",
                hp_name=lambda trial: f"trial-{trial.number}",
                **kwargs,
            )
        except NeuroTrainError as exc:  # a NaN stop or bad values for this trial: the study goes on
            error, status = first_line(exc), run_status(exc)
        except ValueError as exc:
            if "No trials are completed yet" not in str(exc):
                raise
        ran += 1
        if main and current["number"] is not None:
            trial = load_study(study, storage).trials[current["number"]]
            if recorder.number == trial.number:
                recorder.finish(status or TRIAL_STATUS.get(trial.state.name, "failed"), error)
            failures = failures + 1 if trial.state.name == "FAIL" else 0
            _log_trial(study, trial, error)
    if failures >= MAX_FAILURES:
        raise ConfigError(f"tune: {failures} trials in a row failed, the last with: {error}")
    return ran


def _log_trial(study: Study, trial, error: str | None) -> None:
    values = ", ".join(
        f"{p.key}={p.value_of(trial.params)}" for p in study.parameters if p.key in trial.params
    )
    if error:
        logger.warning("trial %d failed at %s: %s", trial.number, values, error)
    else:
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        logger.info(
            "trial %d %s: valid %s %s at %s",
            trial.number,
            trial.state.name.lower(),
            study.metric,
            value,
            values,
        )


def space(study: Study, trial, worker: int | None = None) -> dict[str, Any]:
    """Samples every parameter (model/peft ones are read back by ``model_init``); returns the
    TrainingArguments attributes transformers sets for the trial."""
    values = {p.key: p.suggest(trial) for p in study.parameters}
    if worker is not None and hasattr(trial, "study"):  # rank 0's optuna trial (others get FixedTrial)
        trial.set_user_attr("worker", worker)
    return {training_attribute(k): v for k, v in values.items() if k.startswith("training.")}


def _states(names: tuple[str, ...]):
    from optuna.trial import TrialState

    return tuple(getattr(TrialState, name) for name in names)


def spawn_workers(argv: list[str], count: int) -> list[subprocess.Popen]:
    """``count`` more processes of the same command as extra workers (``--worker-index`` 1..count); they
    and this process start their first trials together (``wait_for_workers``)."""
    os.environ[LAUNCH_ENV] = f"{uuid.uuid4().hex[:12]}:{count + 1}"
    procs = []
    for index in range(1, count + 1):
        command = [sys.executable, "-m", "neurotrain_hf.cli", *argv, "--workers", "1"]
        procs.append(subprocess.Popen([*command, "--worker-index", str(index)], env=dict(os.environ)))
    return procs


def wait_for_workers(study: Study, storage, worker: int, timeout: float = 600.0) -> None:
    """Workers started together (``--workers K``) mark themselves ready in the study; the first waits for
    the others before its first trial (each takes seconds to start), so the trials are shared out."""
    import time

    launch, count = os.environ[LAUNCH_ENV].rsplit(":", 1)
    current = load_study(study, storage)
    current.set_user_attr(f"ready {launch} {worker}", True)
    if worker != 0:
        return
    wanted = {f"ready {launch} {i}" for i in range(int(count))}
    deadline = time.time() + timeout
    while not wanted <= set(load_study(study, storage).user_attrs) and time.time() < deadline:
        time.sleep(0.5)

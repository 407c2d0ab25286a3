"""The ``[tune]`` section: search settings and the search space, sampled into a trial's config.

A parameter is a table with ``low``/``high`` (``log``, ``step``) or ``choices``, under its config key's
dotted path: ``learning_rate = {low = 1e-5, high = 1e-2, log = true}`` ([training] is the default
section), ``model.kwargs.depth = {choices = [3, 4, 5]}``, ``model.name = {choices = [...]}`` (architecture
search over the model registry). Other keys are settings (``TuneSettings``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

SEARCHABLE = ("training", "model", "peft")  # data is prepared once per study: its sections stay fixed
PRUNERS = ("median", "hyperband", "none")


@dataclass
class TuneSettings:
    """``[tune]`` settings (every other key of the section is a parameter)."""

    trials: int = field(default=10, metadata={"help": "Trials the study runs in all (over every worker)."})
    pruner: str = field(
        default="median",
        metadata={"help": "Stop unpromising trials at an evaluation: median, hyperband or none."},
    )
    study: str = field(
        default="",
        metadata={"help": "Study name (and folder `<output_dir>/<task>/<study>`); default: run_id."},
    )
    storage: str = field(
        default="",
        metadata={"help": "SQLAlchemy URL of the study; default: the runs database ([basic] database)."},
    )
    sampler_seed: int | None = field(default=None, metadata={"help": "Seed of the TPE sampler."})
    heartbeat_s: int = field(
        default=60, metadata={"help": "A trial silent this long (x2) belongs to a dead worker: failed."}
    )
    startup_trials: int = field(
        default=2, metadata={"help": "Trials that complete before the pruner may stop one."}
    )


@dataclass
class Parameter:
    """One searched config key and its distribution."""

    key: str  # full dotted path, e.g. training.learning_rate
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    def suggest(self, trial) -> Any:
        """Optuna's suggestion (lists and tables among the choices travel as JSON text)."""
        if self.choices is not None:
            options = [c if isinstance(c, (str, int, float, bool)) else json.dumps(c) for c in self.choices]
            picked = trial.suggest_categorical(self.key, options)
            return self.choices[options.index(picked)]
        if isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float):
            return trial.suggest_int(self.key, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def value_of(self, params: dict[str, Any]) -> Any:
        """This parameter's value in a finished trial's ``params`` (JSON choices decoded)."""
        value = params[self.key]
        if self.choices is not None and value not in self.choices:
            return json.loads(value)
        return value


def _is_parameter(value: Any) -> bool:
    return isinstance(value, dict) and ("choices" in value or "low" in value or "high" in value)


def parse_tune(section: dict[str, Any], source: str) -> tuple[TuneSettings, list[Parameter]]:
    """Settings and parameters of a ``[tune]`` table; a bad entry is one line naming it."""
    names = {f.name for f in dataclasses.fields(TuneSettings)}
    settings: dict[str, Any] = {}
    parameters: list[Parameter] = []

    def walk(table: dict[str, Any], path: str) -> None:
        for key, value in table.items():
            dotted = f"{path}{key}"
            if _is_parameter(value):
                parameters.append(_parameter(dotted, value, source))
            elif isinstance(value, dict):
                walk(value, f"{dotted}.")
            elif not path and key in names:
                settings[key] = value
            else:
                raise ConfigError(
                    f"{source}: [tune] {dotted}: not a setting ({', '.join(sorted(names))}) nor a parameter "
                    "table ({low = .., high = ..} or {choices = [..]})"
                )

    walk(section, "")
    try:
        tune = TuneSettings(**settings)
    except TypeError as exc:
        raise ConfigError(f"{source}: [tune] {exc}") from None
    if tune.pruner not in PRUNERS:
        raise ConfigError(f"{source}: [tune] pruner {tune.pruner!r}: one of {', '.join(PRUNERS)}")
    if not isinstance(tune.trials, int) or tune.trials < 1:
        raise ConfigError(f"{source}: [tune] trials must be a positive integer")
    if not parameters:
        raise ConfigError(
            f"{source}: [tune] names no parameter, e.g. learning_rate = {{low = 1e-4, high = 1e-2, log = true}}"
        )
    return tune, parameters


def _parameter(dotted: str, spec: dict[str, Any], source: str) -> Parameter:
    from ..config.experiment import SECTION_ORDER

    head = dotted.split(".", 1)[0]
    key = dotted if head in SECTION_ORDER else f"training.{dotted}"
    section = key.split(".", 1)[0]
    if section not in SEARCHABLE:
        raise ConfigError(
            f"{source}: [tune] {dotted}: [{section}] keys cannot be searched (the data is prepared once per "
            f"study); searchable: {', '.join(f'[{s}]' for s in SEARCHABLE)}"
        )
    unknown = set(spec) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise ConfigError(f"{source}: [tune] {dotted}: unknown field(s) {', '.join(sorted(unknown))}")
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"{source}: [tune] {dotted}: choices must be a non-empty list")
        return Parameter(key, choices=list(spec["choices"]))
    if "low" not in spec or "high" not in spec or not spec["low"] < spec["high"]:
        raise ConfigError(f"{source}: [tune] {dotted}: needs low < high")
    if spec.get("log") and spec["low"] <= 0:
        raise ConfigError(f"{source}: [tune] {dotted}: log = true needs low > 0")
    return Parameter(key, spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step"))


def apply_values(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dict with ``section.key.sub`` paths set (tables created on the way)."""
    out = copy.deepcopy(config)
    for key, value in values.items():
        *parents, last = key.split(".")
        table = out
        for part in parents:
            table = table.setdefault(part, {})
        table[last] = value
    return out


def training_attribute(key: str) -> str:
    """The TrainingArguments attribute a ``training.*`` parameter sets (``batch_size`` is an alias)."""
    name = key.split(".", 1)[1]
    return "per_device_train_batch_size" if name == "batch_size" else name

"""The experiment config: TOML/YAML/JSON sections -> dataclasses through ``HfArgumentParser``.

``load_config(path, overrides)`` validates every key (unknown names get a "did you mean"), type and
bound, then builds each section with ``HfArgumentParser.parse_dict``. ``[dataset]``, ``[augmentation]``
and ``[training]`` are the chosen task's classes (its ``TaskSpec`` names them): a key the task does not
read is refused in one line naming the task and the nearest valid key. ``[training]`` becomes the
task's ``TrainingArguments`` subclass with ``output_dir`` set to the run folder; its metric and loss
names are checked against the task's metric families and loss kinds.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NeuroTrainError
from ..registry import did_you_mean
from .io import read_config_file
from .sections import (
    SECTIONS,
    TASK_SECTIONS,
    AugmentationConfig,
    BasicConfig,
    DatasetConfig,
    HubConfig,
    ModelConfig,
    PeftConfig,
    QuantizationConfig,
    TestingConfig,
)
from .validation import check_section, field_types, parse_override_value

logger = logging.getLogger(__name__)

SECTION_ORDER = (
    "basic",
    "model",
    "dataset",
    "training",
    "testing",
    "augmentation",
    "peft",
    "quantization",
    "hub",
)
RESERVED_SECTIONS: tuple[str, ...] = ("tune",)  # kept verbatim: [tune] is read by `neurotrain tune`
# [training] keys that belong to [basic]: one place for each setting.
MOVED_KEYS = {"seed": "basic", "output_dir": "basic"}
SECRET_KEY = re.compile(r"(^|_)(token|password|secret)$")  # hub_token, push_to_hub_token, ...


@dataclass
class ExperimentConfig:
    """One experiment: every section as a dataclass, plus where it came from."""

    basic: BasicConfig
    model: ModelConfig
    dataset: DatasetConfig  # the task's subclass
    training: Any  # the task's TrainingArguments subclass
    testing: TestingConfig
    augmentation: AugmentationConfig  # the task's subclass
    peft: PeftConfig = field(default_factory=PeftConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "<dict>"
    training_keys: tuple[str, ...] = ()

    @property
    def run_dir(self) -> Path:
        return Path(self.basic.output_dir) / self.basic.task / self.basic.run_id

    def to_dict(self) -> dict[str, Any]:
        """The resolved config: all values of our sections, and the [training] values that were set."""
        out: dict[str, Any] = {}
        for name in SECTION_ORDER:
            if name == "training":
                out[name] = training_dict(self.training, self.training_keys)
            else:
                out[name] = dataclasses.asdict(getattr(self, name))
        out.update(self.extra)
        return out


def training_dict(args: Any, explicit: tuple[str, ...]) -> dict[str, Any]:
    """[training] as written back: our subclasses' fields plus inherited ones that were given explicitly."""
    from transformers import TrainingArguments

    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    values = args.to_dict()
    keep = {}
    for f in dataclasses.fields(args):
        if not f.init or f.name in MOVED_KEYS or SECRET_KEY.search(f.name):
            continue
        if f.name not in inherited or f.name in explicit:
            keep[f.name] = values.get(f.name, getattr(args, f.name))
    return keep


def parse_overrides(argv: list[str] | None) -> dict[str, dict[str, str]]:
    """``["--training.learning_rate", "3e-4", "--dataset.name=digits"]`` -> {section: {key: raw}}."""
    out: dict[str, dict[str, str]] = {}
    argv = list(argv or [])
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or "." not in token:
            raise ConfigError(f"command line: expected --section.key VALUE, got {token!r}")
        name, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise ConfigError(f"command line: --{name} needs a value")
            value = argv[i + 1]
            i += 1
        section, _, key = name.partition(".")
        out.setdefault(section, {})[key.replace("-", "_")] = value
        i += 1
    return out


def _section_class(section: str, task: str) -> type:
    if section in TASK_SECTIONS:
        from ..tasks import get_task

        return get_task(task).section_class(section)
    return SECTIONS[section]


def _build(cls: type, section: str, values: dict[str, Any], source: str) -> Any:
    from .parser import NeuroArgumentParser

    try:
        (obj,) = NeuroArgumentParser(cls).parse_dict(values)
    except NeuroTrainError as exc:  # a section's own check (__post_init__): name the file
        message = str(exc)
        raise ConfigError(message if message.startswith(source) else f"{source}: {message}") from None
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{source}: [{section}] {first}") from None
    return obj


def move_keys(data: dict[str, dict[str, Any]], training_cls: type, source: str) -> None:
    """Keys a task moved out of ``[training]`` (``moved_keys``) are read into their new section, in place;
    one note per key, and an error when both places set it."""
    for key, home in getattr(training_cls, "moved_keys", {}).items():
        if key not in data.get("training", {}):
            continue
        if key in data.get(home, {}):
            raise ConfigError(
                f"{source}: [training] {key} and [{home}] {key} are both set; keep [{home}] {key}"
            )
        data.setdefault(home, {})[key] = data["training"].pop(key)
        logger.info("%s: [training] %s is read as [%s] %s (its place now)", source, key, home, key)


def check_task_names(training: Any, task: str, explicit: tuple[str, ...] = ()) -> None:
    """Metric names and ``metric_for_best_model`` against the task's metric families, loss names against
    the loss kinds it takes (both declared on its ``[training]`` class). A best metric the family declares
    lower-is-better (a distance, an error) is minimised unless ``greater_is_better`` was set."""
    families = getattr(training, "metric_families", ())
    if families:
        from ..metrics.registry import check_metrics, lower_is_better

        best_key = training.metric_for_best_model or ""
        if "greater_is_better" not in explicit and best_key and lower_is_better(best_key, families):
            training.greater_is_better = False

        strategy = getattr(training.eval_strategy, "value", training.eval_strategy)
        uses_best = strategy != "no"  # every evaluation looks the best metric up (transformers)
        best = training.metric_for_best_model if uses_best else None
        check_metrics(list(training.metrics or []), best, families, task)
    kinds = getattr(training, "loss_kinds", ())
    if kinds:
        from ..losses import check_loss

        check_loss(training.loss, kinds, task)


def build_config(
    data: dict[str, Any], source: str = "<dict>", overrides: list[str] | None = None
) -> ExperimentConfig:
    """Validate and build an ExperimentConfig from a dict of sections plus command-line overrides."""
    data = {k: dict(v) for k, v in data.items()}
    known = (*SECTION_ORDER, *RESERVED_SECTIONS)
    for section in data:
        if section not in known:
            raise ConfigError(f"{source}: unknown section [{section}]{did_you_mean(section, known)}")
    raw_overrides = parse_overrides(overrides)
    for section in raw_overrides:
        if section not in SECTION_ORDER:
            raise ConfigError(
                f"command line: unknown section --{section}.*{did_you_mean(section, SECTION_ORDER)}"
            )

    task = str({**data.get("basic", {}), **raw_overrides.get("basic", {})}.get("task", "") or "")
    try:
        if task:
            from ..tasks import get_task

            move_keys(data, _section_class("training", task), source)
            move_keys(raw_overrides, _section_class("training", task), "command line")
            if not {**data.get("model", {}), **raw_overrides.get("model", {})}.get("name"):
                data.setdefault("model", {})["name"] = get_task(task).default_model
        else:
            from ..tasks import list_tasks

            raise ConfigError(f"[basic] task is required; one of {', '.join(list_tasks())}")
    except NeuroTrainError as exc:
        message = str(exc).removeprefix("[basic] task: ")
        raise ConfigError(f"{source}: [basic] task: {message}") from None
    built: dict[str, Any] = {}
    explicit: tuple[str, ...] = ()
    for section in ("basic", *[s for s in SECTION_ORDER if s != "basic"]):
        cls = _section_class(section, task)
        owner = task if section in TASK_SECTIONS else None
        values = dict(data.get(section, {}))
        types_ = field_types(cls)
        for key, raw in raw_overrides.get(section, {}).items():
            if key not in types_:
                from .validation import unknown_key

                raise unknown_key("command line", section, key, list(types_), owner)
            values[key] = parse_override_value(raw, types_[key])
        if section == "training":
            for key, home in MOVED_KEYS.items():
                if key in values:
                    raise ConfigError(f"{source}: [training] {key} is set in [{home}] {key}")
            for key in values:
                if SECRET_KEY.search(key):
                    raise ConfigError(
                        f"{source}: [training] {key}: secrets do not belong in experiment files (they are copied "
                        "into run folders); log in with `hf auth login` or set HF_TOKEN"
                    )
            values = check_section(cls, section, values, source, owner)
            explicit = tuple(values)
            if values.get("batch_size") is not None:
                values.setdefault("per_device_train_batch_size", values["batch_size"])
                values.setdefault("per_device_eval_batch_size", values["batch_size"])
            basic = built["basic"]
            values["seed"] = basic.seed
            values["output_dir"] = str(Path(basic.output_dir) / basic.task / basic.run_id)
        else:
            values = check_section(cls, section, values, source, owner)
        if section == "peft" and "peft" in data and "method" not in values:
            values["method"] = "lora"  # writing the section asks for LoRA
        if section == "basic" and not values.get("run_id"):
            values["run_id"] = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        built[section] = _build(cls, section, values, source)
        if section == "training":
            try:
                check_task_names(built[section], task, explicit)
            except NeuroTrainError as exc:
                raise ConfigError(f"{source}: {exc}") from None
    extra = {k: v for k, v in data.items() if k in RESERVED_SECTIONS}
    return ExperimentConfig(**built, extra=extra, source=source, training_keys=explicit)


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read an experiment file (.toml/.yaml/.json) and apply ``--section.key value`` overrides."""
    return build_config(read_config_file(path), source=str(path), overrides=overrides)


_CURRENT: ExperimentConfig | None = None
_MISSING = object()


def get_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """NeuroTrain's entry point: load ``path`` and make it current, or return the current config."""
    global _CURRENT
    if path is not None:
        _CURRENT = load_config(path, overrides)
    if _CURRENT is None:
        raise ConfigError("no config loaded: call get_config(path) first")
    return _CURRENT


def set_config(config: ExperimentConfig) -> None:
    global _CURRENT
    _CURRENT = config


def get_config_value(key: str, default: Any = _MISSING) -> Any:
    """Dotted lookup in the current config, e.g. ``get_config_value("training.batch_size")``."""
    config = get_config()
    section, _, name = key.partition(".")
    obj = getattr(config, section, None) if section in SECTION_ORDER else config.extra.get(section)
    if obj is not None and name:
        value = obj.get(name, _MISSING) if isinstance(obj, dict) else getattr(obj, name, _MISSING)
        if value is not _MISSING:
            return value
    if default is not _MISSING:
        return default
    raise ConfigError(f"{config.source}: no config value {key!r}")

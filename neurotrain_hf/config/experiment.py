"""The experiment config: TOML/YAML/JSON sections -> dataclasses through ``HfArgumentParser``.

``load_config(path, overrides)`` validates every key (unknown names get a "did you mean"), type and
bound, then builds each section with ``HfArgumentParser.parse_dict``; ``[training]`` becomes the task's
``TrainingArguments`` subclass with ``output_dir`` set to the run folder.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NeuroTrainError
from ..registry import did_you_mean
from .io import read_config_file
from .sections import (
    SECTIONS,
    AugmentationConfig,
    BasicConfig,
    DatasetConfig,
    HubConfig,
    ModelConfig,
    PeftConfig,
    TestingConfig,
)
from .validation import check_section, field_types, parse_override_value

SECTION_ORDER = ("basic", "model", "dataset", "training", "testing", "augmentation", "peft", "hub")
RESERVED_SECTIONS: tuple[str, ...] = ()  # sections read by later tasks, kept verbatim until they exist
# [training] keys that belong to [basic]: one place for each setting.
MOVED_KEYS = {"seed": "basic", "output_dir": "basic"}
SECRET_KEY = re.compile(r"(^|_)(token|password|secret)$")  # hub_token, push_to_hub_token, ...


@dataclass
class ExperimentConfig:
    """One experiment: every section as a dataclass, plus where it came from."""

    basic: BasicConfig
    model: ModelConfig
    dataset: DatasetConfig
    training: Any  # the task's TrainingArguments subclass
    testing: TestingConfig
    augmentation: AugmentationConfig
    peft: PeftConfig = field(default_factory=PeftConfig)
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
    if section == "training":
        from ..tasks import get_task

        return get_task(task).config_class()
    return SECTIONS[section]


def _build(cls: type, section: str, values: dict[str, Any], source: str) -> Any:
    from .parser import NeuroArgumentParser

    try:
        (obj,) = NeuroArgumentParser(cls).parse_dict(values)
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{source}: [{section}] {first}") from None
    return obj


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

    task = str({**data.get("basic", {}), **raw_overrides.get("basic", {})}.get("task", BasicConfig.task))
    built: dict[str, Any] = {}
    explicit: tuple[str, ...] = ()
    for section in ("basic", *[s for s in SECTION_ORDER if s != "basic"]):
        try:
            cls = _section_class(section, task)
        except NeuroTrainError as exc:
            raise ConfigError(f"{source}: [basic] task: {exc}") from None
        values = dict(data.get(section, {}))
        types_ = field_types(cls)
        for key, raw in raw_overrides.get(section, {}).items():
            if key not in types_:
                raise ConfigError(
                    f"command line: unknown key --{section}.{key}{did_you_mean(key, list(types_))}"
                )
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
            values = check_section(cls, section, values, source)
            explicit = tuple(values)
            if values.get("batch_size") is not None:
                values.setdefault("per_device_train_batch_size", values["batch_size"])
                values.setdefault("per_device_eval_batch_size", values["batch_size"])
            basic = built["basic"]
            values["seed"] = basic.seed
            values["output_dir"] = str(Path(basic.output_dir) / basic.task / basic.run_id)
        else:
            values = check_section(cls, section, values, source)
        if section == "peft" and "peft" in data and "method" not in values:
            values["method"] = "lora"  # writing the section asks for LoRA
        if section == "basic" and not values.get("run_id"):
            values["run_id"] = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        built[section] = _build(cls, section, values, source)
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

"""Type, range and key checks for config values, with one-line errors naming file, key and expectation."""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import types
import typing
from typing import Any, Literal, Union

from ..errors import ConfigError
from ..registry import did_you_mean

# Bounds for inherited TrainingArguments fields (our own fields carry "min"/"max" in their metadata).
TRAINING_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "learning_rate": (0.0, None),
    "num_train_epochs": (0.0, None),
    "per_device_train_batch_size": (1, None),
    "per_device_eval_batch_size": (1, None),
    "gradient_accumulation_steps": (1, None),
    "weight_decay": (0.0, None),
    "warmup_steps": (0, None),
    "max_grad_norm": (0.0, None),
    "logging_steps": (0, None),
    "save_total_limit": (1, None),
    "dataloader_num_workers": (0, None),
}


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass's init fields (HfArgumentParser mutates ``Field.type``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def field_metadata(cls: type, name: str) -> dict[str, Any]:
    return next(dict(f.metadata) for f in dataclasses.fields(cls) if f.name == name)


def describe(tp: Any) -> str:
    """A short human name for a type hint (``float``, ``list of int``, ``one of 'a', 'b'``)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        parts = [describe(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(parts)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {describe(args[0])}" if args else "list"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check ``value`` against the hint ``tp``; returns (ok, value converted where lossless, e.g. int->float)."""
    if tp is Any:
        return True, value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return True, None
        # Try non-str members first so "3" stays a str only where str is allowed.
        for arg in sorted((a for a in args if a is not type(None)), key=lambda a: a is str):
            ok, converted = coerce(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin is Literal:
        return value in typing.get_args(tp), value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        out = []
        for item in value:
            ok, conv = coerce(item, item_tp)
            if not ok:
                return False, value
            out.append(conv)
        return True, out
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [m.value for m in tp]
        return (value in values or isinstance(value, tp)), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is int:
        return (isinstance(value, int) and not isinstance(value, bool)), value
    if tp is str:
        return isinstance(value, str), value
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value


def nearest(name: str, options: list[str]) -> str | None:
    """The option most like ``name`` (however distant), for messages that must name one."""
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.0)
    return close[0] if close else None


def unknown_key(source: str, section: str, key: str, options: list[str], task: str | None) -> ConfigError:
    """One line for a key the section does not have; for a task's section it names the task, the nearest
    valid key and which other tasks read the key."""
    if task is None:
        return ConfigError(f"{source}: unknown key [{section}] {key}{did_you_mean(key, options)}")
    from ..tasks import each_task

    classes = each_task(lambda spec: spec.section_class(section))
    readers = [other for other, cls in classes.items() if other != task and key in field_types(cls)]
    where = f" (read by {', '.join(readers)})" if readers else ""
    near = nearest(key, options)
    hint = f"; nearest valid key: {near!r}" if near else ""
    return ConfigError(f"{source}: [{section}] {key}: the {task} task does not read this key{where}{hint}")


def check_section(
    cls: type, section: str, values: dict[str, Any], source: str, task: str | None = None
) -> dict[str, Any]:
    """Validate one section's keys, types, choices and bounds; returns values with lossless conversions.

    ``task``: the section is the task's own (``[dataset]``, ``[augmentation]``, ``[training]``)."""
    types_ = field_types(cls)
    checked: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{source}: [{section}] {key}"
        if key not in types_:
            raise unknown_key(source, section, key, list(types_), task)
        ok, converted = coerce(value, types_[key])
        if not ok:
            raise ConfigError(f"{where} = {value!r}: expected {describe(types_[key])}")
        meta = field_metadata(cls, key)
        choices = meta.get("choices")
        if choices and converted is not None and converted not in choices:
            raise ConfigError(f"{where} = {converted!r}: expected one of {', '.join(map(repr, choices))}")
        low, high = meta.get("min"), meta.get("max")
        if section == "training" and key in TRAINING_BOUNDS and low is None and high is None:
            low, high = TRAINING_BOUNDS[key]
        if isinstance(converted, (int, float)) and not isinstance(converted, bool):
            if low is not None and converted < low:
                raise ConfigError(f"{where} = {converted!r}: out of range, expected >= {low}")
            if high is not None and converted > high:
                raise ConfigError(f"{where} = {converted!r}: out of range, expected <= {high}")
        checked[key] = converted
    return checked


def parse_override_value(raw: str, tp: Any) -> Any:
    """Turn a command-line string into a value: TOML literal syntax, except where a str is expected."""
    import tomllib

    accepts_str = tp is str or str in typing.get_args(tp)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw.lower() in ("none", "null"):
            return None
        return raw
    if accepts_str and not isinstance(value, str) and not coerce(value, tp)[0]:
        return raw
    if tp is str:
        return raw
    return value

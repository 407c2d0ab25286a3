"""Generate ``docs/configuration.md`` from the section dataclasses' help texts (``make docs``)."""

from __future__ import annotations

import dataclasses
import sys

from .sections import SECTIONS
from .validation import describe, field_types


def _default(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return repr(f.default_factory())  # type: ignore[misc]
    return "required" if f.default is dataclasses.MISSING else repr(f.default)


def _table(cls: type, fields: list[dataclasses.Field]) -> list[str]:
    types_ = field_types(cls)
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for f in fields:
        meta = f.metadata
        bounds = [f">= {meta['min']}" if "min" in meta else "", f"<= {meta['max']}" if "max" in meta else ""]
        extra = f" ({', '.join(b for b in bounds if b)})" if any(bounds) else ""
        choices = f" One of: {', '.join(map(repr, meta['choices']))}." if meta.get("choices") else ""
        help_ = str(meta.get("help", "")).replace("|", "\\|").replace("\n", " ")
        rows.append(
            f"| `{f.name}` | {describe(types_[f.name])} | `{_default(f)}` | {help_}{extra}{choices} |"
        )
    return rows


def render() -> str:
    """The whole reference page as Markdown: the shared sections, then one set of tables per task."""
    from transformers import TrainingArguments

    from ..tasks import get_task, list_tasks
    from .sections import AugmentationConfig, DatasetConfig

    lines = [
        "# Configuration reference",
        "",
        "Generated from the dataclasses' help texts by `make docs` (`python -m neurotrain_hf.config.reference`);",
        "a test fails when this page is stale. Every key can be overridden on the command line as",
        "`--section.key VALUE` (TOML literal syntax: `3e-4`, `true`, `[1, 2]`). `[dataset]`, `[augmentation]` and",
        "`[training]` belong to the task: a key the chosen task does not read is refused in one line naming the",
        "task and the nearest valid key.",
        "",
    ]
    for name, cls in SECTIONS.items():
        lines += [f"## [{name}]", "", (cls.__doc__ or "").strip(), ""]
        lines += _table(cls, [f for f in dataclasses.fields(cls) if f.init]) + [""]
    from ..tune.space import TuneSettings

    lines += [
        "## [tune]",
        "",
        "Read by `neurotrain tune` only (docs/tune.md). Its settings are below; every other key is a searched",
        "parameter: a table with `low`/`high` (`log`, `step`) or `choices`, under the config key's dotted path",
        "(`learning_rate` means `training.learning_rate`; `model.kwargs.depth`, `model.name`, `peft.r`).",
        "",
    ]
    lines += _table(TuneSettings, [f for f in dataclasses.fields(TuneSettings) if f.init]) + [""]
    shared = {"dataset": DatasetConfig, "augmentation": AugmentationConfig}
    for name, cls in shared.items():
        lines += [f"## [{name}]: keys every task reads", "", " ".join((cls.__doc__ or "").split()), ""]
        fields = [f for f in dataclasses.fields(cls) if f.init]
        lines += (_table(cls, fields) if fields else ["(none: every key is the task's)"]) + [""]
    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    for task in list_tasks():  # the tasks of this package (installed ones document themselves)
        spec = get_task(task)
        if not spec.task.startswith("neurotrain_hf."):
            continue
        lines += [f"## Task `{task}`", "", spec.description, ""]
        for name, base in shared.items():
            cls = spec.section_class(name)
            base_names = {f.name for f in dataclasses.fields(base)}
            own = [
                f
                for f in dataclasses.fields(cls)
                if f.init and (f.name not in base_names or _redefined(cls, f.name))
            ]
            lines += [
                f"### [{name}] for `{task}` ({cls.__name__})",
                "",
                " ".join((cls.__doc__ or "").split()),
                "",
            ]
            lines += (_table(cls, own) if own else ["(only the keys every task reads)"]) + [""]
        cls = spec.config_class()
        own = [f for f in dataclasses.fields(cls) if f.init and f.name not in inherited]
        redefaulted = [
            f
            for f in dataclasses.fields(cls)
            if f.init and f.name in inherited and "neurotrain_hf" in _owner(cls, f.name)
        ]
        lines += [
            f"### [training] for `{task}` ({cls.__name__})",
            "",
            " ".join((cls.__doc__ or "").split()),
            "",
            *_names(task, cls),
        ]
        lines += ["Fields neurotrain adds:", ""] + _table(cls, own)
        lines += (
            ["", "TrainingArguments fields with neurotrain defaults:", ""] + _table(cls, redefaulted) + [""]
        )
        moved = getattr(cls, "moved_keys", {})
        if moved:
            where = ", ".join(f"`{k}` -> `[{v}]`" for k, v in moved.items())
            lines += [
                f"Older files may set these in `[training]`; they are read into their place: {where}.",
                "",
            ]
        lines += [
            "Every other `transformers.TrainingArguments` field is accepted as documented by transformers,",
            "except `seed` and `output_dir`, which come from `[basic]`.",
            "",
        ]
    return "\n".join(lines)


def _names(task: str, cls: type) -> list[str]:
    """The metric and loss names a task's ``[training]`` accepts (as ``neurotrain list`` prints them)."""
    from ..losses import list_losses
    from ..metrics.registry import metric_names, reported_names

    lines = []
    if cls.metric_families:
        names = metric_names(cls.metric_families)
        extra = [n for n in reported_names(cls.metric_families) if n not in names]
        also = (
            f"; `metric_for_best_model` may also name {', '.join(f'`{n}`' for n in extra)}" if extra else ""
        )
        listed = ", ".join(f"`{n}`" for n in names)
        lines += [f"Metrics (`neurotrain list metrics --task {task}`): {listed}{also}.", ""]
    if cls.loss_kinds:
        losses = ", ".join(f"`{n}`" for n in list_losses(kinds=cls.loss_kinds))
        lines += [f"Losses (`neurotrain list losses --task {task}`): {losses}.", ""]
    return lines


def _redefined(cls: type, name: str) -> bool:
    """A field the task's class (not the shared base) declares, e.g. a re-defaulted dataset name."""
    owner = _owner(cls, name)
    return "neurotrain_hf.config.sections" not in owner and bool(owner)


def _owner(cls: type, name: str) -> str:
    """Module of the most derived class in the MRO that declares field ``name``."""
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            return klass.__module__
    return ""


if __name__ == "__main__":
    sys.stdout.write(render())

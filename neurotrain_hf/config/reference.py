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
    """The whole reference page as Markdown."""
    from transformers import TrainingArguments

    from ..tasks import get_task, list_tasks

    lines = [
        "# Configuration reference",
        "",
        "Generated from the dataclasses' help texts by `make docs` (`python -m neurotrain_hf.config.reference`);",
        "a test fails when this page is stale. Every key can be overridden on the command line as",
        "`--section.key VALUE` (TOML literal syntax: `3e-4`, `true`, `[1, 2]`).",
        "",
    ]
    for name, cls in SECTIONS.items():
        lines += [f"## [{name}]", "", (cls.__doc__ or "").strip(), ""]
        lines += _table(cls, [f for f in dataclasses.fields(cls) if f.init]) + [""]
    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    for task in list_tasks():
        cls = get_task(task).config_class()
        own = [f for f in dataclasses.fields(cls) if f.init and f.name not in inherited]
        redefaulted = [
            f
            for f in dataclasses.fields(cls)
            if f.init and f.name in inherited and "neurotrain_hf" in _owner(cls, f.name)
        ]
        lines += [
            f"## [training] for task `{task}` ({cls.__name__})",
            "",
            " ".join((cls.__doc__ or "").split()),
            "",
            "Fields neurotrain adds:",
            "",
        ]
        lines += _table(cls, own) + ["", "TrainingArguments fields with neurotrain defaults:", ""]
        lines += _table(cls, redefaulted) + [""]
        lines += [
            "Every other `transformers.TrainingArguments` field is accepted as documented by transformers,",
            "except `seed` and `output_dir`, which come from `[basic]`.",
            "",
        ]
    return "\n".join(lines)


def _owner(cls: type, name: str) -> str:
    """Module of the most derived class in the MRO that declares field ``name``."""
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            return klass.__module__
    return ""


if __name__ == "__main__":
    sys.stdout.write(render())

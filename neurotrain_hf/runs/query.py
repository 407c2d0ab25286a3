"""``--where`` and ``--sort`` over the index: run fields, a split's metric (its last value) or a config key.

``test.f1 > 0.8 and training.learning_rate <= 1e-3 or (status = failed and task = segmentation)``: terms
are ``FIELD OP VALUE`` with ``= != > >= < <= ~`` (``~``: contains), joined by ``and``/``or`` and
parentheses. Everything is translated to SQL, so it runs on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ConfigError
from .schema import Metric, Param, Run

SPLITS = ("train", "valid", "test")
FIELDS = {
    "id": Run.id,
    "task": Run.task,
    "name": Run.name,
    "status": Run.status,
    "study": Run.study,
    "trial": Run.trial,
    "host": Run.host,
    "world_size": Run.world_size,
    "device": Run.device,
    "git_commit": Run.git_commit,
    "config_hash": Run.config_hash,
    "run_dir": Run.run_dir,
}
TOKEN = re.compile(
    r"\s*(?:(?P<op>>=|<=|!=|==|=|>|<|~)|(?P<paren>[()])|(?P<str>\"[^\"]*\"|'[^']*')|(?P<word>[^\s()<>=!~]+))"
)


def _sections() -> tuple[str, ...]:
    from ..config.experiment import SECTION_ORDER

    return (*SECTION_ORDER, "tune")


def field_expression(name: str, numeric: bool = True):
    """The SQL scalar a field name stands for: a column, a metric's last value, or a config value."""
    from sqlmodel import select

    if name in FIELDS:
        return FIELDS[name]
    head, _, rest = name.partition(".")
    if head in SPLITS and rest:
        return (
            select(Metric.value)
            .where(Metric.run_id == Run.id, Metric.split == head, Metric.name == rest)
            .order_by(Metric.step.desc(), Metric.id.desc())
            .limit(1)
            .scalar_subquery()
        )
    if head in _sections() and rest:
        column = Param.number if numeric else Param.value
        return select(column).where(Param.run_id == Run.id, Param.key == name).limit(1).scalar_subquery()
    raise ConfigError(
        f"--where/--sort: unknown field {name!r}: use a run field ({', '.join(FIELDS)}), a metric as "
        f"split.name ({'/'.join(SPLITS)}, e.g. test.f1) or a config key as section.key (e.g. "
        "training.learning_rate)"
    )


def _value(token: str) -> Any:
    if token[:1] in "\"'":
        return token[1:-1]
    try:
        return float(token)
    except ValueError:
        return token


def _term(name: str, op: str, raw: str):
    value = _value(raw)
    numeric = isinstance(value, float)
    column = field_expression(name, numeric=numeric)
    if name in FIELDS and name in ("id", "trial", "world_size") and not numeric:
        raise ConfigError(f"--where: {name} {op} {raw}: {name} is a number")
    if name in FIELDS and name not in ("id", "trial", "world_size") and numeric:
        value = raw.strip("\"'")  # text columns compare as text ("run 1" or a hash prefix)
    if op == "~":
        return column.contains(str(value))
    return {
        "=": column == value,
        "==": column == value,
        "!=": column != value,
        ">": column > value,
        ">=": column >= value,
        "<": column < value,
        "<=": column <= value,
    }[op]


def parse_where(text: str):
    """The SQL condition of a ``--where`` expression; a malformed one is one line saying where."""
    from sqlalchemy import and_, or_

    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ConfigError(f"--where: cannot read {text[position:]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    index = 0

    def peek() -> tuple[str, str] | None:
        return tokens[index] if index < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal index
        if index >= len(tokens):
            raise ConfigError(f"--where {text!r}: ends too early")
        index += 1
        return tokens[index - 1]

    def expression():
        parts = [conjunction()]
        while peek() and peek()[1].lower() == "or":
            take()
            parts.append(conjunction())
        return parts[0] if len(parts) == 1 else or_(*parts)

    def conjunction():
        parts = [atom()]
        while peek() and peek()[1].lower() == "and":
            take()
            parts.append(atom())
        return parts[0] if len(parts) == 1 else and_(*parts)

    def atom():
        kind, value = take()
        if (kind, value) == ("paren", "("):
            inner = expression()
            if take() != ("paren", ")"):
                raise ConfigError(f"--where {text!r}: a '(' is not closed")
            return inner
        if kind != "word":
            raise ConfigError(f"--where {text!r}: expected a field name, got {value!r}")
        op_kind, op = take()
        if op_kind != "op":
            raise ConfigError(f"--where {text!r}: expected an operator (= != > >= < <= ~) after {value!r}")
        value_kind, raw = take()
        if value_kind not in ("word", "str"):
            raise ConfigError(f"--where {text!r}: expected a value after {value} {op}")
        return _term(value, op, raw)

    condition = expression()
    if index != len(tokens):
        raise ConfigError(f"--where {text!r}: unexpected {tokens[index][1]!r}")
    return condition


def sort_expression(key: str):
    """``test.f1`` ascending, ``-test.f1`` descending; runs without the value come last."""
    descending = key.startswith("-")
    column = field_expression(key.lstrip("-+"))
    ordered = column.desc() if descending else column.asc()
    return ordered.nulls_last()


def select_runs(db, where: str | None = None, sort: str | None = None, **equal: Any) -> list[Run]:
    """Runs matching ``where`` and the given field values (None ignored), sorted."""
    from sqlmodel import select

    statement = select(Run)
    for name, value in equal.items():
        if value is not None:
            statement = statement.where(FIELDS[name] == value)
    if where:
        statement = statement.where(parse_where(where))
    statement = statement.order_by(sort_expression(sort) if sort else Run.id.asc(), Run.id.asc())
    return db.read(lambda session: list(session.exec(statement).all()))


def field_names(where: str | None, sort: str | None) -> list[str]:
    """The metric and config fields an expression names (``runs list`` shows them as columns)."""
    names = []
    for text in (where or "", (sort or "").lstrip("-+")):
        for match in TOKEN.finditer(text):
            word = match.group("word")
            if word and "." in word and word.split(".")[0] in (*SPLITS, *_sections()) and word not in names:
                names.append(word)
    return names

"""Metric families: the one way every task composes its evaluation metrics.

A family is one streaming accumulator computing several metrics from one state (e.g. a confusion
matrix gives accuracy, precision, recall, F1). ``register_family(name, metrics, reports)`` declares the
names a config may select in ``[training] metrics`` (``metrics``) and the further keys the family
reports that ``metric_for_best_model`` may name (``reports``, wildcards allowed, e.g. ``dice_*``). A
task's ``[training]`` class lists its families (``metric_families``); ``neurotrain list metrics --task``,
the config check and ``StreamingMetrics`` all read the same declarations.

An accumulator has ``reset()``, ``update(predictions, references)``, ``compute(keys)`` and, unless its
``STATE`` attributes merge by addition (``merge_state``), ``merge(other)``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..registry import Registry, did_you_mean


@dataclass(frozen=True)
class MetricFamily:
    """A registered family: its builder and the names it serves."""

    name: str
    build: Callable[..., Any]  # build(names=[...], **options) -> accumulator
    metrics: tuple[str, ...]  # selectable in [training] metrics (and by metric_for_best_model)
    reports: tuple[str, ...] = ()  # other reported keys metric_for_best_model may name (wildcards)
    lower_is_better: tuple[str, ...] = ()  # keys (wildcards) where smaller is better (distances, errors)


FAMILIES: Registry[MetricFamily] = Registry("metric family")


def register_family(
    name: str, metrics: Sequence[str], reports: Sequence[str] = (), lower_is_better: Sequence[str] = ()
):
    """Decorator registering ``build(names, **options)`` as the family ``name``."""

    def decorator(build: Callable[..., Any]) -> Callable[..., Any]:
        family = MetricFamily(name, build, tuple(metrics), tuple(reports), tuple(lower_is_better))
        FAMILIES.register(name)(family)
        return build

    return decorator


def get_family(name: str) -> MetricFamily:
    """A registered family; tasks register theirs when their ``[training]`` class is imported, so an
    unknown name first loads every task's."""
    if name not in FAMILIES:
        from ..tasks import TaskSpec, each_task

        each_task(TaskSpec.config_class)
    return FAMILIES.get(name)


def list_families(pattern: str = "*") -> list[str]:
    return FAMILIES.list(pattern)


def metric_names(families: Sequence[str]) -> list[str]:
    """The selectable metric names of these families, in declaration order."""
    return [name for family in families for name in get_family(family).metrics]


def reported_names(families: Sequence[str]) -> list[str]:
    """Every key these families can report: the selectable names and the ``reports`` patterns."""
    return [*metric_names(families), *(p for f in families for p in get_family(f).reports)]


def check_metrics(names: Sequence[str], best: str | None, families: Sequence[str], task: str) -> None:
    """One line for a metric name the task does not compute, or a ``metric_for_best_model`` it does not
    report; ``best`` may also be ``loss``."""
    valid = metric_names(families)
    for name in names:
        if name not in valid:
            raise ConfigError(
                f"[training] metrics: {name!r} is not a {task} metric{did_you_mean(name, valid)}; "
                f"valid: {', '.join(valid)}"
            )
    if best is None:
        return
    key = best.removeprefix("eval_")
    if key == "loss":
        return
    chosen = [f for f in families if any(n in get_family(f).metrics for n in names)]
    allowed = [*names, *(p for f in chosen for p in get_family(f).reports)]
    if not any(fnmatch.fnmatchcase(key, pattern) for pattern in allowed):
        raise ConfigError(
            f"[training] metric_for_best_model = {best!r}: not reported by [training] metrics {list(names)}"
            f"{did_you_mean(key, allowed)}; choose one of {', '.join(['loss', *allowed])}"
        )


def lower_is_better(key: str, families: Sequence[str]) -> bool:
    """Whether smaller values of ``key`` are better (a distance or an error, as the family declares)."""
    key = key.removeprefix("eval_")
    return any(fnmatch.fnmatchcase(key, p) for f in families for p in get_family(f).lower_is_better)


class StreamingMetrics:
    """The requested metrics of a task's families: per-batch update, one compute at the end; memory is
    bounded by the families' state, not the data."""

    def __init__(self, names: Sequence[str], families: Sequence[str], **options: Any) -> None:
        self.names = list(names)
        groups: dict[str, list[str]] = {}
        for name in self.names:
            family = next((f for f in families if name in get_family(f).metrics), None)
            if family is None:
                valid = metric_names(families)
                raise ConfigError(
                    f"[training] metrics: unknown {name!r}{did_you_mean(name, valid)}; valid: {', '.join(valid)}"
                )
            groups.setdefault(family, []).append(name)
        self.families = {
            fam: (get_family(fam).build(names=keys, **options), keys) for fam, keys in groups.items()
        }

    def reset(self) -> None:
        for acc, _ in self.families.values():
            acc.reset()

    def update(self, predictions: Any, references: Any) -> None:
        for acc, _ in self.families.values():
            acc.update(predictions, references)

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for acc, keys in self.families.values():
            out.update(acc.compute(keys))
        return out

    def family(self, name: str) -> Any:
        return self.families[name][0]

    def merge(self, other: StreamingMetrics) -> None:
        """Add another (e.g. another process's) state of the same metrics into this one."""
        for name, (acc, _) in self.families.items():
            theirs = other.families[name][0]
            if hasattr(acc, "merge"):
                acc.merge(theirs)
            else:
                merge_state(acc, theirs)


def merge_state(into: Any, other: Any) -> None:
    """Merge an accumulator's declared ``STATE``: arrays and numbers add, lists extend, dicts add per key."""
    for key in type(into).STATE:
        mine, theirs = getattr(into, key), getattr(other, key)
        if isinstance(mine, bool):
            setattr(into, key, mine and theirs)
        elif isinstance(mine, list):
            mine.extend(theirs)
        elif isinstance(mine, dict):
            setattr(into, key, {k: mine[k] + theirs[k] for k in mine})
        else:
            setattr(into, key, mine + theirs)

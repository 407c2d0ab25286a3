"""Metrics: one implementation each, streamed by the trainers (and wrapped as evaluate modules).

Tasks compose them through metric families (``registry.register_family``); ``list_metrics(task)``
gives the names a task's ``[training] metrics`` accepts.
"""

from .classification import ClassificationAccumulator, compute_classification
from .registry import StreamingMetrics, list_families, metric_names, register_family


def list_metrics(task: str | None = None, pattern: str = "*") -> list[str]:
    """The metric names a task computes (every task's when ``task`` is None), with reported key patterns."""
    import fnmatch

    from ..tasks import get_task, list_tasks
    from .registry import reported_names

    names: list[str] = []
    for name in [task] if task else list_tasks():
        for key in reported_names(get_task(name).config_class().metric_families):
            if key not in names and fnmatch.fnmatchcase(key, pattern):
                names.append(key)
    return names


__all__ = [
    "ClassificationAccumulator",
    "StreamingMetrics",
    "compute_classification",
    "list_families",
    "list_metrics",
    "metric_names",
    "register_family",
]

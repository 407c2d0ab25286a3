"""Metrics: one implementation each, streamed by the trainers (and wrapped as evaluate modules).

Tasks compose them through metric families (``registry.register_family``); ``list_metrics(task)``
gives the names a task's ``[training] metrics`` accepts.
"""

from .classification import ClassificationAccumulator, compute_classification
from .registry import StreamingMetrics, list_families, metric_names, register_family


def list_metrics(task: str | None = None, pattern: str = "*") -> list[str]:
    """The metric names a task computes (every task's when ``task`` is None), with reported key patterns."""
    import fnmatch

    from ..tasks import TaskSpec, each_task, get_task
    from .registry import reported_names

    classes = {task: get_task(task).config_class()} if task else each_task(TaskSpec.config_class)
    names: list[str] = []
    for cls in classes.values():
        for key in reported_names(cls.metric_families):
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

"""Metrics: one implementation each, streamed by the trainers (and wrapped as evaluate modules)."""

from .classification import ClassificationAccumulator, compute_classification
from .registry import StreamingMetrics, get_metric, list_metrics, register_family, register_metric

__all__ = [
    "ClassificationAccumulator",
    "StreamingMetrics",
    "compute_classification",
    "get_metric",
    "list_metrics",
    "register_family",
    "register_metric",
]

"""Metric registry: metric names chosen in the config, grouped into streaming accumulator families.

A family (e.g. ``classification``) is one accumulator computing several metrics from one state;
``register_metric(name, family)`` makes a name selectable, ``build_metrics(names, ...)`` returns a
``StreamingMetrics`` that feeds each family once per batch and keeps only the requested keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from .detection import SUMMARY_KEYS

FAMILIES: Registry[Callable[..., Any]] = Registry("metric family")
METRICS: Registry[str] = Registry("metric")


def register_family(name: str):
    return FAMILIES.register(name)


def register_metric(name: str, family: str) -> None:
    METRICS.register(name)(family)


def list_metrics(pattern: str = "*") -> list[str]:
    return METRICS.list(pattern)


def get_metric(name: str) -> str:
    """The family computing ``name``."""
    return METRICS.get(name)


class StreamingMetrics:
    """Per-batch update, one compute at the end; memory bounded by the families' state, not the data."""

    def __init__(self, names: Sequence[str], **options: Any) -> None:
        self.names = list(names)
        groups: dict[str, list[str]] = {}
        for name in self.names:
            try:
                groups.setdefault(get_metric(name), []).append(name)
            except KeyError as exc:
                raise ConfigError(f"[training] metrics: {exc}") from None
        self.families = {fam: (FAMILIES.get(fam)(**options), keys) for fam, keys in groups.items()}

    def reset(self) -> None:
        for acc, _ in self.families.values():
            acc.reset()

    def update(self, predictions, references) -> None:
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
            merge_state(acc, other.families[name][0])


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


def _classification_family(
    num_labels: int, top_k=(1, 3, 5), average: str = "macro", keep_scores: bool = True
):
    from .classification import ClassificationAccumulator

    return ClassificationAccumulator(num_labels, top_k=top_k, average=average, keep_scores=keep_scores)


register_family("classification")(_classification_family)
for _name in ("accuracy", "precision", "recall", "f1", "auc", "top1", "top3", "top5"):
    register_metric(_name, "classification")


def _threshold_family(thresholds=None, **_: object):
    from .threshold import ThresholdSweep

    return ThresholdSweep(thresholds)


register_family("threshold")(_threshold_family)
for _name in ("best_f1", "best_f1_threshold", "best_accuracy", "best_accuracy_threshold"):
    register_metric(_name, "threshold")


def _overlap_family(kind: str):
    def build(
        num_labels: int,
        ignore_index=None,
        include_background: bool = False,
        overlap_average: str = "per_image",
        **_: object,
    ):
        from .overlap import OverlapAccumulator

        return OverlapAccumulator(kind, num_labels, ignore_index, include_background, overlap_average)

    return build


def _nsd_family(
    num_labels: int,
    tolerance=1.0,
    spacing=1.0,
    use_subvoxels: bool = False,
    include_background: bool = False,
    ignore_index=None,
    **_: object,
):
    from .surface import SurfaceDiceAccumulator

    return SurfaceDiceAccumulator(
        num_labels, tolerance, spacing, use_subvoxels, include_background, ignore_index
    )


def _detection_family(
    iou_type: str = "bbox",
    box_format: str = "xyxy",
    iou_thresholds=None,
    max_detection_thresholds=(1, 10, 100),
    score_threshold: float = 0.5,
    **_: object,
):
    from .detection import DetectionAccumulator

    return DetectionAccumulator(
        iou_type, box_format, iou_thresholds, max_detection_thresholds, score_threshold=score_threshold
    )


def _retrieval_family(k_values=(1, 5, 10), **_: object):
    from .retrieval import RetrievalAccumulator

    return RetrievalAccumulator(k_values)


register_family("dice")(_overlap_family("dice"))
register_family("retrieval")(_retrieval_family)
register_metric("clip_retrieval", "retrieval")
register_metric("zero_shot_accuracy", "retrieval")
register_family("iou")(_overlap_family("iou"))
register_family("nsd")(_nsd_family)
register_family("detection")(_detection_family)
register_metric("mean_dice", "dice")
register_metric("mean_iou", "iou")
register_metric("mean_nsd", "nsd")
for _name in (*SUMMARY_KEYS, "f1_50", "f1_75"):
    register_metric(_name, "detection")

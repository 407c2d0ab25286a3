"""The classification task's metric families: a confusion matrix (accuracy, P/R/F1, top-k, AUC) and a
threshold sweep of binary scores; both implementations live in ``neurotrain_hf.metrics``."""

from __future__ import annotations

from collections.abc import Sequence

from ...metrics.registry import register_family

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "auc", "top1", "top3", "top5")
THRESHOLD_METRICS = ("best_f1", "best_f1_threshold", "best_accuracy", "best_accuracy_threshold")


@register_family("classification", CLASSIFICATION_METRICS)
def classification_family(names: Sequence[str], num_labels: int, average: str = "macro", **_: object):
    from ...metrics.classification import ClassificationAccumulator

    return ClassificationAccumulator(num_labels, top_k=(1, 3, 5), average=average, keep_scores="auc" in names)


@register_family("threshold", THRESHOLD_METRICS)
def threshold_family(names: Sequence[str], thresholds=None, **_: object):
    from ...metrics.threshold import ThresholdSweep

    return ThresholdSweep(thresholds)

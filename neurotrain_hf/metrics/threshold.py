"""Threshold sweeps for binary probabilities (maps or per-sample scores), streamed by counting.

A pixel/sample is positive at threshold t when ``p >= t``. Counts per threshold come from one
``searchsorted`` per batch (exact for the given thresholds, no binning error), so memory is O(#thresholds).
``at_threshold`` reads the metrics at one threshold, ``at_accuracy_threshold`` at the accuracy-maximising
one, ``at_recall_threshold`` at the highest threshold still reaching a target recall; ``best_threshold``
maximises any of the swept metrics (default F1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .common import check_nonempty, to_numpy

SWEPT = ("precision", "recall", "f1", "accuracy", "iou", "specificity")


def _probabilities(pred: np.ndarray) -> np.ndarray:
    """(N, 2) logits -> P(class 1); anything else is taken as probabilities already."""
    if pred.ndim == 2 and pred.shape[1] == 2 and (pred.min() < 0 or pred.max() > 1):
        z = pred - pred.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e[:, 1] / e.sum(axis=1)
    return pred[:, 1] if pred.ndim == 2 and pred.shape[1] == 2 else pred


class ThresholdSweep:
    """Streaming confusion counts at every threshold."""

    STATE = ("pos", "neg", "count")  # summed/extended across processes

    def __init__(self, thresholds: Sequence[float] | None = None) -> None:
        self.thresholds = (
            np.arange(101) / 100 if thresholds is None else np.sort(np.asarray(thresholds, float))
        )
        self.reset()

    def reset(self) -> None:
        self.pos = np.zeros(len(self.thresholds) + 1, np.int64)  # histogram of positives by threshold index
        self.neg = np.zeros(len(self.thresholds) + 1, np.int64)
        self.count = 0

    def update(self, predictions, references) -> None:
        check_nonempty(predictions, references)
        probs = _probabilities(to_numpy(predictions, "predictions").astype(np.float64))
        refs = to_numpy(references, "references")
        if probs.shape != refs.shape:
            raise ValueError(f"predictions shape {probs.shape} != references shape {refs.shape}")
        if not np.isfinite(probs).all():
            raise ValueError(
                f"sample {self.count + int(np.argwhere(~np.isfinite(probs))[0][0])}: NaN or inf score"
            )
        if not np.isin(refs, (0, 1)).all():
            raise ValueError("references must be binary (0/1)")
        idx = np.searchsorted(self.thresholds, probs.reshape(-1), side="right")  # thresholds <= p
        refs = refs.reshape(-1).astype(bool)
        self.pos += np.bincount(idx[refs], minlength=len(self.pos))
        self.neg += np.bincount(idx[~refs], minlength=len(self.neg))
        self.count += len(predictions)

    def curves(self) -> dict[str, np.ndarray]:
        """Metric arrays over the thresholds."""
        # positive at threshold i <=> at least i+1 thresholds are <= p  <=> idx >= i+1
        tp = np.cumsum(self.pos[::-1])[::-1][1:].astype(np.float64)
        fp = np.cumsum(self.neg[::-1])[::-1][1:].astype(np.float64)
        p_total, n_total = self.pos.sum(), self.neg.sum()
        fn, tn = p_total - tp, n_total - fp

        def div(a, b):
            return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

        return {
            "threshold": self.thresholds,
            "precision": div(tp, tp + fp),
            "recall": div(tp, tp + fn),
            "f1": div(2 * tp, 2 * tp + fp + fn),
            "accuracy": div(tp + tn, tp + tn + fp + fn),
            "iou": div(tp, tp + fp + fn),
            "specificity": div(tn, tn + fp),
        }

    def at_index(self, i: int) -> dict[str, float]:
        return {k: float(v[i]) for k, v in self.curves().items()}

    def at_threshold(self, threshold: float) -> dict[str, float]:
        matches = np.flatnonzero(np.isclose(self.thresholds, threshold))
        if not len(matches):
            raise ValueError(f"threshold {threshold} is not among the swept thresholds")
        return self.at_index(int(matches[0]))

    def best_threshold(self, metric: str = "f1") -> dict[str, float]:
        if metric not in SWEPT:
            raise ValueError(f"metric={metric!r}: expected one of {', '.join(SWEPT)}")
        return self.at_index(int(np.argmax(self.curves()[metric])))

    def at_recall_threshold(self, recall: float = 0.9) -> dict[str, float]:
        ok = np.flatnonzero(self.curves()["recall"] >= recall)
        return self.at_index(int(ok[-1]) if len(ok) else 0)

    def compute(self, names: Sequence[str] | None = None) -> dict[str, float]:
        best, acc = self.best_threshold("f1"), self.best_threshold("accuracy")
        out = {
            "best_f1": best["f1"],
            "best_f1_threshold": best["threshold"],
            "best_accuracy": acc["accuracy"],
            "best_accuracy_threshold": acc["threshold"],
        }
        return {n: out[n] for n in names if n in out} if names is not None else out


def _sweep(predictions, references, thresholds) -> ThresholdSweep:
    sweep = ThresholdSweep(thresholds)
    sweep.update(predictions, references)
    return sweep


def at_threshold(predictions, references, threshold: float = 0.5, thresholds=None) -> dict[str, Any]:
    """Precision, recall, F1, accuracy, IoU and specificity at ``threshold``."""
    grid = thresholds if thresholds is not None else sorted({*(np.arange(101) / 100).tolist(), threshold})
    return _sweep(predictions, references, grid).at_threshold(threshold)


def at_accuracy_threshold(predictions, references, thresholds=None) -> dict[str, Any]:
    """Metrics at the threshold with the best accuracy."""
    return _sweep(predictions, references, thresholds).best_threshold("accuracy")


def at_recall_threshold(predictions, references, recall: float = 0.9, thresholds=None) -> dict[str, Any]:
    """Metrics at the highest threshold whose recall is still >= ``recall``."""
    return _sweep(predictions, references, thresholds).at_recall_threshold(recall)


def best_threshold(predictions, references, metric: str = "f1", thresholds=None) -> dict[str, Any]:
    """Metrics at the threshold maximising ``metric`` (e.g. the best-F1 threshold)."""
    return _sweep(predictions, references, thresholds).best_threshold(metric)

"""Segmentation metrics streamed with flat memory: retinal protocol inside the FOV, whole-image overlap.

- Inside the FOV (the whole image when a dataset has none), binary heads: accuracy, sensitivity,
  specificity, precision, F1 (= Dice), IoU and MCC at the threshold, AUC-ROC, and the best-F1
  threshold, from ``metrics.threshold.ThresholdSweep`` counts over a 1,001-point threshold grid (AUC by
  the trapezoid rule over that grid's ROC points).
- Whole image, per class: ``mean_dice`` / ``mean_iou`` from ``metrics.overlap.OverlapAccumulator``
  (per-image mean, MONAI's empty-reference convention); opt-in ``mean_nsd`` (``metrics.surface``,
  tolerance ``nsd_tolerance`` pixels) and ``mean_hd95`` (MONAI's 95th-percentile Hausdorff distance).
State is counts only; ``merge`` adds another process's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...metrics.overlap import OverlapAccumulator
from ...metrics.registry import merge_state
from ...metrics.surface import SurfaceDiceAccumulator
from ...metrics.threshold import ThresholdSweep

FOV_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "iou", "mcc", "auc")
THRESHOLD_METRICS = ("best_f1", "best_f1_threshold")
OVERLAP_METRICS = ("mean_dice", "mean_iou")
SURFACE_METRICS = ("mean_nsd", "mean_hd95")  # per class, whole image; costlier, so opt-in
ALL_METRICS = (*FOV_METRICS, *THRESHOLD_METRICS, *OVERLAP_METRICS, *SURFACE_METRICS)


class HausdorffAccumulator:
    """Streaming 95th-percentile Hausdorff distance (MONAI ``compute_hausdorff_distance``) per class.

    Images where a class is empty in the reference or the prediction are left out of that class.
    """

    STATE = ("distance_sum", "distance_count", "count")

    def __init__(self, num_labels: int) -> None:
        self.num_labels = num_labels
        self.reset()

    def reset(self) -> None:
        self.distance_sum = np.zeros(self.num_labels)
        self.distance_count = np.zeros(self.num_labels)
        self.count = 0

    def update(self, predictions: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> None:
        from monai.metrics import compute_hausdorff_distance

        for pred, ref in zip(predictions, references):
            classes = range(1, self.num_labels)
            p = np.stack([pred == c for c in classes])[None]
            r = np.stack([ref == c for c in classes])[None]
            keep = p.reshape(len(classes), -1).any(1) & r.reshape(len(classes), -1).any(1)
            if keep.any():
                hd = compute_hausdorff_distance(torch.from_numpy(p), torch.from_numpy(r), percentile=95)
                values = hd.numpy()[0]
                for i, c in enumerate(classes):
                    if keep[i] and np.isfinite(values[i]):
                        self.distance_sum[c] += values[i]
                        self.distance_count[c] += 1
            self.count += 1

    def compute(self) -> float:
        """Mean over classes of the per-class mean HD95 (NaN when no image had the class on both sides)."""
        valid = self.distance_count > 0
        return (
            float((self.distance_sum[valid] / self.distance_count[valid]).mean())
            if valid.any()
            else float("nan")
        )


def mcc(tp: float, fp: float, tn: float, fn: float) -> float:
    """Matthews correlation coefficient (0 when a marginal is empty, as scikit-learn)."""
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denom) if denom > 0 else 0.0


def counts(sweep: ThresholdSweep) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(TP, FP) per swept threshold (predicted positive: p >= t), and the positive/negative totals."""
    tp = np.cumsum(sweep.pos[::-1])[::-1][1:].astype(np.float64)
    fp = np.cumsum(sweep.neg[::-1])[::-1][1:].astype(np.float64)
    return tp, fp, int(sweep.pos.sum()), int(sweep.neg.sum())


def roc_auc(sweep: ThresholdSweep) -> float:
    """Area under the ROC points of a threshold sweep (trapezoid rule), NaN without both classes."""
    tp, fp, p, n = counts(sweep)
    if p == 0 or n == 0:
        return float("nan")
    tpr = np.concatenate([[1.0], tp / p, [0.0]])
    fpr = np.concatenate([[1.0], fp / n, [0.0]])
    return float(-np.trapezoid(tpr, fpr))


class SegmentationMetrics:
    """Streaming segmentation metrics over batches of (predictions dict, references dict)."""

    def __init__(
        self,
        names: Sequence[str],
        num_labels: int,
        threshold: float = 0.5,
        sources: Sequence[str] = (),
        nsd_tolerance: float = 1.0,
    ) -> None:
        unknown = sorted(set(names) - set(ALL_METRICS))
        if unknown:
            from ...errors import ConfigError

            raise ConfigError(
                f"[training] metrics: unknown {unknown}; segmentation has {', '.join(ALL_METRICS)}"
            )
        self.names = list(names)
        self.num_labels = num_labels
        self.threshold = threshold
        self.binary = num_labels == 1
        self.sweep = ThresholdSweep(np.linspace(0.0, 1.0, 1001))
        classes = 2 if self.binary else num_labels
        self.dice = OverlapAccumulator("dice", classes, None, False, "per_image")
        self.iou = OverlapAccumulator("iou", classes, None, False, "per_image")
        self.nsd = SurfaceDiceAccumulator(classes, tolerance=nsd_tolerance)
        self.hd95 = HausdorffAccumulator(classes)
        self.sources = list(sources)
        # several sources (a hybrid dataset): the same metrics per source, reported as `<name>@<source>`
        self.per_source = (
            [SegmentationMetrics(names, num_labels, threshold) for _ in self.sources]
            if len(self.sources) > 1
            else []
        )

    def reset(self) -> None:
        for acc in self._accumulators():
            acc.reset()
        for sub in self.per_source:
            sub.reset()

    def update(self, predictions: dict[str, Any], references: dict[str, torch.Tensor]) -> None:
        source = references.get("source")
        if self.per_source and source is not None:
            for index in source.unique().tolist():
                rows = source == index
                self.per_source[index].update(
                    {k: v[rows] for k, v in predictions.items() if v is not None},
                    {k: v[rows] for k, v in references.items() if v is not None},
                )
        labels = references["labels"]
        maps = predictions["labels"].cpu().numpy()
        refs = labels.cpu().numpy()
        if self.binary:
            inside = references["fov"].bool()
            probs = predictions["probability"][inside].float().cpu().numpy()
            self.sweep.update(probs, labels[inside].cpu().numpy().astype(np.int64))
        if any(n in OVERLAP_METRICS for n in self.names):
            self.dice.update(list(maps), list(refs))
            self.iou.update(list(maps), list(refs))
        if "mean_nsd" in self.names:
            self.nsd.update(list(maps), list(refs))
        if "mean_hd95" in self.names:
            self.hd95.update(list(maps), list(refs))

    def merge(self, other: SegmentationMetrics) -> None:
        for mine, theirs in zip(self._accumulators(), other._accumulators()):
            merge_state(mine, theirs)
        for mine, theirs in zip(self.per_source, other.per_source):
            mine.merge(theirs)

    def _accumulators(self) -> tuple:
        return (self.sweep, self.dice, self.iou, self.nsd, self.hd95)

    def at_threshold(self) -> dict[str, float]:
        """FOV metrics at the configured threshold, from the sweep's counts."""
        i = int(np.argmin(np.abs(self.sweep.thresholds - self.threshold)))
        tps, fps, p, n = counts(self.sweep)
        tp, fp = float(tps[i]), float(fps[i])
        row = self.sweep.at_index(i)
        fn, tn = p - tp, n - fp
        return {
            "accuracy": row["accuracy"],
            "sensitivity": row["recall"],
            "specificity": row["specificity"],
            "precision": row["precision"],
            "f1": row["f1"],
            "iou": row["iou"],
            "mcc": mcc(tp, fp, tn, fn),
        }

    def compute(self) -> dict[str, float]:
        out: dict[str, Any] = {}
        if self.binary and self.sweep.pos.sum() + self.sweep.neg.sum() > 0:
            out.update(self.at_threshold())
            out["auc"] = roc_auc(self.sweep)
            best = self.sweep.best_threshold("f1")
            out["best_f1"], out["best_f1_threshold"] = best["f1"], best["threshold"]
        if self.dice.count:
            out["mean_dice"] = self.dice.compute(["mean_dice"])["mean_dice"]
            out["mean_iou"] = self.iou.compute(["mean_iou"])["mean_iou"]
        if self.nsd.count:
            out["mean_nsd"] = self.nsd.compute(["mean_nsd"])["mean_nsd"]
        if self.hd95.count:
            out["mean_hd95"] = self.hd95.compute()
        out = {k: v for k, v in out.items() if k in self.names}
        for name, sub in zip(self.sources, self.per_source):
            out.update({f"{k}@{name}": v for k, v in sub.compute().items()})
        return out

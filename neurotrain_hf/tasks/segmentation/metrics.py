"""Segmentation metrics streamed with flat memory: retinal protocol inside the FOV, whole-image overlap.

- Inside the FOV (the whole image when a dataset has none), binary heads: accuracy, sensitivity,
  specificity, precision, F1 (= Dice), IoU and MCC at the threshold, AUC-ROC, and the best-F1
  threshold, from ``metrics.threshold.ThresholdSweep`` counts over a 1,001-point threshold grid (AUC by
  the trapezoid rule over that grid's ROC points).
- Whole image, per class: ``mean_dice`` / ``mean_iou`` from ``metrics.overlap.OverlapAccumulator``
  (per-image mean, MONAI's empty-reference convention); opt-in ``mean_nsd`` (``metrics.surface``,
  tolerance ``nsd_tolerance`` pixels, or mm for volumes with a ``spacing``) and ``mean_hd95`` (MONAI's
  95th-percentile Hausdorff distance, in mm for volumes); ``per_class`` reports each class too.
- With ``regions`` (BraTS: ET/TC/WT as sets of labels) the whole-image metrics are computed per region
  on the union of its labels instead of per class.
State is counts only (memory flat in the number of images); ``merge`` adds another process's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...metrics.overlap import OverlapAccumulator
from ...metrics.registry import merge_state, register_family
from ...metrics.surface import SurfaceDiceAccumulator
from ...metrics.threshold import ThresholdSweep

FOV_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "iou", "mcc", "auc")
THRESHOLD_METRICS = ("best_f1", "best_f1_threshold")
OVERLAP_METRICS = ("mean_dice", "mean_iou")
SURFACE_METRICS = ("mean_nsd", "mean_hd95")  # per class, whole image; costlier, so opt-in
ALL_METRICS = (*FOV_METRICS, *THRESHOLD_METRICS, *OVERLAP_METRICS, *SURFACE_METRICS, "per_class")
PER_CLASS = ("dice_*", "iou_*", "nsd_*", "hd95_*")  # keys `per_class` reports


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

    def update(
        self, predictions: Sequence[np.ndarray], references: Sequence[np.ndarray], spacing: Any = None
    ) -> None:
        from monai.metrics import compute_hausdorff_distance

        for pred, ref in zip(predictions, references):
            classes = range(1, self.num_labels)
            p = np.stack([pred == c for c in classes])[None]
            r = np.stack([ref == c for c in classes])[None]
            keep = p.reshape(len(classes), -1).any(1) & r.reshape(len(classes), -1).any(1)
            if keep.any():
                hd = compute_hausdorff_distance(
                    torch.from_numpy(p),
                    torch.from_numpy(r),
                    include_background=True,
                    percentile=95,
                    spacing=spacing,
                )
                values = hd.numpy()[0]
                for i, c in enumerate(classes):
                    if keep[i] and np.isfinite(values[i]):
                        self.distance_sum[c] += values[i]
                        self.distance_count[c] += 1
            self.count += 1

    def per_class(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.distance_count > 0, self.distance_sum / self.distance_count, np.nan)

    def compute(self) -> float:
        """Mean over classes of the per-class mean HD95 (NaN when no image had the class on both sides)."""
        values = self.per_class()[1:]
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


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
        threshold: Any = 0.5,
        sources: Sequence[str] = (),
        nsd_tolerance: float | Sequence[float] = 1.0,
        label_names: Sequence[str] | None = None,
        regions: dict[str, list[int]] | None = None,
    ) -> None:
        unknown = sorted(set(names) - set(ALL_METRICS))
        if unknown:
            from ...errors import ConfigError

            raise ConfigError(
                f"[training] metrics: unknown {unknown}; segmentation has {', '.join(ALL_METRICS)}"
            )
        self.names = list(names)
        self.num_labels = num_labels
        self._threshold = threshold  # a number, or the model's SegmentationSettings (read when computing)
        self.binary = num_labels == 1
        self.regions = dict(regions) if regions else None
        self.sweep = ThresholdSweep(np.linspace(0.0, 1.0, 1001))
        # whole-image metrics run over classes 1.. of a label map, or over regions as 2-class maps
        classes = 2 if self.binary else num_labels
        if self.regions:
            self.class_names = list(self.regions)
            n_maps, classes = len(self.regions), 2
        else:
            names_ = list(label_names or range(classes))
            self.class_names = [str(n) for n in names_[1:]] if not self.binary else ["foreground"]
            n_maps = 1
        tolerances = (
            [nsd_tolerance] * n_maps
            if np.ndim(nsd_tolerance) == 0 or not self.regions
            else [[t] for t in nsd_tolerance]
        )
        self.dice = [OverlapAccumulator("dice", classes, None, False, "per_image") for _ in range(n_maps)]
        self.iou = [OverlapAccumulator("iou", classes, None, False, "per_image") for _ in range(n_maps)]
        self.nsd = [SurfaceDiceAccumulator(classes, tolerance=t) for t in tolerances]
        self.hd95 = [HausdorffAccumulator(classes) for _ in range(n_maps)]
        self.sources = list(sources)
        # several sources (a hybrid dataset): the same metrics per source, reported as `<name>@<source>`
        self.per_source = (
            [
                SegmentationMetrics(names, num_labels, threshold, (), nsd_tolerance, label_names, regions)
                for _ in self.sources
            ]
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
            fov = references.get("fov")
            inside = fov.bool() if fov is not None else torch.ones_like(labels, dtype=torch.bool)
            probs = predictions["probability"][inside].float().cpu().numpy()
            self.sweep.update(probs, labels[inside].cpu().numpy().astype(np.int64))
        spacing = references.get("spacing")
        surface = [n for n in SURFACE_METRICS if n in self.names]
        overlap = any(n in OVERLAP_METRICS for n in self.names)
        for k in range(len(maps)):
            sample_spacing = spacing[k].tolist() if spacing is not None else None
            for m, (pred, ref) in enumerate(self._maps(maps[k], refs[k])):
                if overlap:
                    self.dice[m].update([pred], [ref])
                    self.iou[m].update([pred], [ref])
                if "mean_nsd" in surface:
                    self.nsd[m].spacing = sample_spacing if sample_spacing is not None else 1.0
                    self.nsd[m].update([pred], [ref])
                if "mean_hd95" in surface:
                    self.hd95[m].update([pred], [ref], spacing=sample_spacing)

    def _maps(self, pred: np.ndarray, ref: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The label map pair, or one binary pair per region."""
        if not self.regions:
            return [(pred, ref)]
        return [
            (np.isin(pred, labels).astype(np.uint8), np.isin(ref, labels).astype(np.uint8))
            for labels in self.regions.values()
        ]

    def merge(self, other: SegmentationMetrics) -> None:
        for mine, theirs in zip(self._accumulators(), other._accumulators()):
            merge_state(mine, theirs)
        for mine, theirs in zip(self.per_source, other.per_source):
            mine.merge(theirs)

    def _accumulators(self) -> tuple:
        return (self.sweep, *self.dice, *self.iou, *self.nsd, *self.hd95)

    @property
    def threshold(self) -> float:
        return float(getattr(self._threshold, "threshold_value", self._threshold))

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

    def compute(self, keys: Sequence[str] | None = None) -> dict[str, float]:
        out: dict[str, Any] = {}
        if self.binary and self.sweep.pos.sum() + self.sweep.neg.sum() > 0:
            out.update(self.at_threshold())
            out["auc"] = roc_auc(self.sweep)
            best = self.sweep.best_threshold("f1")
            out["best_f1"], out["best_f1_threshold"] = best["f1"], best["threshold"]
        per_class: dict[str, Any] = {}
        for key, accs in (("dice", self.dice), ("iou", self.iou), ("nsd", self.nsd)):
            if not accs[0].count:
                continue
            values = [acc.compute([f"per_class_{key}"])[f"per_class_{key}"][1:] for acc in accs]
            flat = np.concatenate([np.asarray(v, dtype=float) for v in values])
            out[f"mean_{key}"] = float(np.nanmean(flat)) if np.isfinite(flat).any() else float("nan")
            per_class.update({f"{key}_{_slug(n)}": float(v) for n, v in zip(self.class_names, flat)})
        if self.hd95[0].count:
            flat = np.concatenate([acc.per_class()[1:] for acc in self.hd95])
            out["mean_hd95"] = float(np.nanmean(flat)) if np.isfinite(flat).any() else float("nan")
            per_class.update({f"hd95_{_slug(n)}": float(v) for n, v in zip(self.class_names, flat)})
        out = {k: v for k, v in out.items() if k in self.names}
        if "per_class" in self.names:
            out.update({k: v for k, v in per_class.items() if f"mean_{k.split('_')[0]}" in self.names})
        for name, sub in zip(self.sources, self.per_source):
            out.update({f"{k}@{name}": v for k, v in sub.compute().items()})
        return out


def _slug(name: str) -> str:
    """A class name as a metric key part: ``right kidney`` -> ``right_kidney``."""
    return "_".join(str(name).replace("/", " ").split())


# the family builds a SegmentationMetrics from the requested names and the trainer's options
register_family(
    "segmentation",
    ALL_METRICS,
    reports=(  # per class or region, and per source of a hybrid dataset (`<metric>@<source>`)
        *PER_CLASS,
        *(f"{name}@*" for name in ALL_METRICS if name != "per_class"),
        *(f"{pattern}@*" for pattern in PER_CLASS),
    ),
    lower_is_better=("mean_hd95", "hd95_*", "mean_hd95@*", "hd95_*@*"),
)(SegmentationMetrics)

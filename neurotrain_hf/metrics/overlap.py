"""Dice and IoU over integer label maps (2D or 3D), streamed image by image.

Per image and class: Dice = 2|P∩R| / (|P| + |R|), IoU = |P∩R| / |P∪R|; a class whose reference is
empty on that image is NaN and left out of the means (MONAI ``ignore_empty=True``). ``per_image``
averages each class over images (nanmean), then over classes; ``global`` sums the counts over all
images first. Pixels whose reference equals ``ignore_index`` are excluded, and so is that class.
State: one (C,) vector per statistic, independent of the number of images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .common import check_nonempty, nanmean, to_numpy

AVERAGES = ("per_image", "global")
KINDS = ("dice", "iou")


def label_counts(pred: np.ndarray, ref: np.ndarray, num_labels: int, ignore_index: int | None, index: int):
    """(intersection, pred size, ref size) per class for one image, from one bincount."""
    if pred.shape != ref.shape:
        raise ValueError(f"sample {index}: prediction shape {pred.shape} != reference shape {ref.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(
            f"sample {index}: expected a 2D (H, W) or 3D (D, H, W) label map, got shape {pred.shape}"
        )
    pred, ref = pred.reshape(-1).astype(np.int64, copy=False), ref.reshape(-1).astype(np.int64, copy=False)
    if ignore_index is not None:
        keep = ref != ignore_index
        pred, ref = pred[keep], ref[keep]
        pred = np.where(pred == ignore_index, num_labels, pred)  # predicted "ignore" counts for no class
    pred_max = num_labels if ignore_index is not None else num_labels - 1  # num_labels: the ignored label
    for name, arr, high in (("prediction", pred, pred_max), ("reference", ref, num_labels - 1)):
        if arr.size and (arr.min() < 0 or arr.max() > high):
            bad = int(arr.min() if arr.min() < 0 else arr.max())
            raise ValueError(f"sample {index}: {name} label {bad} outside [0, {num_labels})")
    joint = np.bincount(ref * (num_labels + 1) + pred, minlength=(num_labels + 1) * num_labels)
    joint = joint.reshape(num_labels, num_labels + 1)
    inter = np.diagonal(joint[:, :num_labels]).astype(np.float64)
    return inter, joint[:, :num_labels].sum(axis=0).astype(np.float64), joint.sum(axis=1).astype(np.float64)


def _score(kind: str, inter, p, r):
    with np.errstate(invalid="ignore", divide="ignore"):
        value = 2 * inter / (p + r) if kind == "dice" else inter / (p + r - inter)
    return np.where(r > 0, value, np.nan)


class OverlapAccumulator:
    """Streaming Dice or IoU; ``update`` takes one batch of label maps."""

    STATE = (
        "inter",
        "pred_size",
        "ref_size",
        "score_sum",
        "score_count",
        "count",
    )  # summed/extended across processes

    def __init__(
        self,
        kind: str,
        num_labels: int,
        ignore_index: int | None = None,
        include_background: bool = False,
        average: str = "per_image",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
        if average not in AVERAGES:
            raise ValueError(f"average={average!r}: expected one of {', '.join(AVERAGES)}")
        self.kind, self.num_labels, self.ignore_index = kind, int(num_labels), ignore_index
        self.include_background, self.average = include_background, average
        self.reset()

    def reset(self) -> None:
        c = self.num_labels
        self.inter, self.pred_size, self.ref_size = np.zeros(c), np.zeros(c), np.zeros(c)
        self.score_sum, self.score_count = np.zeros(c), np.zeros(c)
        self.count = 0

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        check_nonempty(predictions, references)
        for pred, ref in zip(predictions, references):
            idx = self.count
            i, p, r = label_counts(
                to_numpy(pred, "prediction", idx),
                to_numpy(ref, "reference", idx),
                self.num_labels,
                self.ignore_index,
                idx,
            )
            self.inter += i
            self.pred_size += p
            self.ref_size += r
            score = _score(self.kind, i, p, r)
            valid = ~np.isnan(score)
            self.score_sum[valid] += score[valid]
            self.score_count += valid
            self.count += 1

    def excluded(self) -> np.ndarray:
        mask = np.zeros(self.num_labels, dtype=bool)
        if not self.include_background:
            mask[0] = True
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_labels:
            mask[self.ignore_index] = True
        return mask

    def compute(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """All outputs, or only ``names`` of them."""
        if self.count == 0:
            raise ValueError("no samples were added: predictions is empty")
        if self.average == "global":
            per_class = _score(self.kind, self.inter, self.pred_size, self.ref_size)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                per_class = np.where(self.score_count > 0, self.score_sum / self.score_count, np.nan)
        per_class = np.where(self.excluded(), np.nan, per_class)
        out = {f"mean_{self.kind}": nanmean(per_class), f"per_class_{self.kind}": per_class.tolist()}
        return {k: out[k] for k in names if k in out} if names is not None else out


def compute_overlap(
    kind: str,
    predictions,
    references,
    num_labels: int,
    ignore_index: int | None = None,
    include_background: bool = False,
    average: str = "per_image",
) -> dict[str, Any]:
    acc = OverlapAccumulator(kind, num_labels, ignore_index, include_background, average)
    acc.update(predictions, references)
    return acc.compute()


def compute_dice(predictions, references, num_labels: int, **kwargs) -> dict[str, Any]:
    """``{"mean_dice", "per_class_dice"}`` for lists of label maps (see module docstring)."""
    return compute_overlap("dice", predictions, references, num_labels, **kwargs)


def compute_iou(predictions, references, num_labels: int, **kwargs) -> dict[str, Any]:
    """``{"mean_iou", "per_class_iou"}`` for lists of label maps (see module docstring)."""
    return compute_overlap("iou", predictions, references, num_labels, **kwargs)

"""Input checks shared by the metrics: arrays from numpy, torch or nested lists, with errors naming the sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def to_numpy(x: Any, what: str = "input", index: int | None = None) -> np.ndarray:
    """numpy array from a numpy array, torch tensor or nested list."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = (
            x.float().numpy()
            if x.is_floating_point() and x.dtype != x.new_zeros(()).double().dtype
            else x.numpy()
        )
    try:
        return np.asarray(x)
    except ValueError:
        where = f"sample {index}: " if index is not None else ""
        raise ValueError(f"{where}{what} is ragged; expected a rectangular array") from None


def check_nonempty(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) == 0:
        raise ValueError("predictions is empty; expected at least one sample")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def nanmean(values: np.ndarray, axis=None) -> np.ndarray | float:
    """Mean ignoring NaN; NaN (without a warning) where everything is NaN."""
    values = np.asarray(values, dtype=np.float64)
    valid = ~np.isnan(values)
    count = valid.sum(axis=axis)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    return float(out) if np.ndim(out) == 0 else out

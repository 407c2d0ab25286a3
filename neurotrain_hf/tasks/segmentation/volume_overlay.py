"""PNG overlays of one axial slice of a volume: the slice with the most foreground, drawn with the 2D
overlay colours (TP / FP / FN against a reference, or the predicted classes alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...drawing import overlay_prediction
from .overlay import overlay


def best_slice(*maps: np.ndarray | None) -> int:
    """The z index with the most foreground in the first map that has any (else the middle slice)."""
    for labels in maps:
        if labels is not None and labels.any():
            return int(np.argmax((labels > 0).sum(axis=(0, 1))))
    first = next(m for m in maps if m is not None)
    return first.shape[2] // 2


def display(plane: np.ndarray) -> np.ndarray:
    """An (X, Y) plane as an image (x across, y up): RAS-stored volumes show anterior up."""
    return np.ascontiguousarray(np.flipud(plane.T))


def scaled(image: np.ndarray) -> np.ndarray:
    """Intensities to [0, 1] by the slice's 1st / 99th percentiles."""
    low, high = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    return np.clip((image - low) / max(high - low, 1e-6), 0, 1).astype(np.float32)


def slice_picture(
    image: np.ndarray, prediction: np.ndarray, reference: np.ndarray | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 of the most informative axial slice of (X, Y, Z) arrays."""
    z = best_slice(reference, prediction)
    picture = display(scaled(image[:, :, z]))
    pred = display(prediction[:, :, z])
    if reference is None:
        return overlay_prediction(picture, pred)
    return overlay(picture, display(reference[:, :, z]), pred)


def save_volume_overlay(
    path: str | Path, inputs: dict[str, Any], k: int, reference: np.ndarray, prediction: np.ndarray
) -> Path:
    """Overlay of an evaluated case: its first channel restored onto the label's grid, then one slice."""
    from .volume_processor import NeuroVolumeProcessor

    image = NeuroVolumeProcessor.restore(
        inputs["pixel_values"][k][:1].detach().float().cpu(),
        inputs["src_affine"][k],
        inputs["dst_affine"][k],
        reference.shape,
    )[0].numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(slice_picture(image, prediction, reference)).save(path)
    return path

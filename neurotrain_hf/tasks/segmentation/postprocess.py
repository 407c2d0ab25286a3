"""Post-processing of predicted segmentation label maps: 2D (H, W) or 3D (D, H, W) numpy arrays.

Scores become labels first, in one function (``scores_to_labels``: one sigmoid channel, foreground where
its probability is >= the threshold; two or more softmax channels, the argmax). ``postprocess`` then
cleans a label map class by class. Each foreground class c = 1..num_labels-1 is
handled as its own binary mask ``labels == c``, by these steps in this order (each off by default):

1. opening, radius ``opening``: removes specks and protrusions thinner than the structuring element;
2. closing, radius ``closing``: bridges gaps and fills dents thinner than it;
3. hole filling: background regions that do not reach the border become foreground;
4. removal of connected components smaller than ``min_size`` pixels/voxels;
5. keeping only the largest connected component (ties: the one met first in C order).

Denoising comes before filling so that specks do not seal holes, and the size filters come last so
they judge the final shapes. Structuring element of radius r: the pixels whose centre lies within
r + 0.5 of the centre, a disk (ball in 3D) of diameter 2r + 1; for r = 1 it is the full 3x3 square in
2D and the 18-neighbourhood in 3D (``skimage.morphology.disk(1)`` is a cross, whose closing leaves
a one-pixel gap in a one-pixel line open). Radii are in pixels along every axis (isotropic). Both
operations see the image as extended by background: opening treats objects touching the border like
any other, and closing pads before it works, so it never removes foreground, at the border included.
Hole filling treats background as face-connected (scipy's default): a ring closed only by diagonal
steps still encloses a hole. ``connectivity`` applies to the component steps 4 and 5.

Classes do not overwrite each other: each class's mask is processed from the input alone, then the
masks are written back in increasing class order onto background. A pixel a class loses becomes
background (0), never a neighbouring class; a pixel that ends up in two classes' masks (closing or
hole filling grew a class onto another) takes the higher class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ...metrics.common import to_numpy


@dataclass
class PostProcessConfig:
    """Cleaning predicted label maps; every step is off by default."""

    opening: int = field(
        default=0,
        metadata={
            "help": "Radius in pixels of a morphological opening per class (disk in 2D, ball in 3D); "
            "removes specks and thin protrusions. 0 disables.",
            "min": 0,
        },
    )
    closing: int = field(
        default=0,
        metadata={
            "help": "Radius in pixels of a morphological closing per class (disk in 2D, ball in 3D); "
            "bridges thin gaps. 0 disables.",
            "min": 0,
        },
    )
    fill_holes: bool = field(
        default=False,
        metadata={"help": "Fill holes (background not connected to the border) inside each class."},
    )
    min_size: int = field(
        default=0,
        metadata={
            "help": "Remove connected components smaller than this many pixels/voxels, per class. "
            "0 disables.",
            "min": 0,
        },
    )
    keep_largest: bool = field(
        default=False, metadata={"help": "Keep only the largest connected component of each class."}
    )
    connectivity: int = field(
        default=1,
        metadata={
            "help": "Neighbourhood of the connected components: 1 = pixels sharing a face (4 in 2D, "
            "6 in 3D); the number of dimensions (2 in 2D, 3 in 3D) = full, diagonals included "
            "(8 in 2D, 26 in 3D); 2 in 3D adds edges (18). Values above the dimensions mean full.",
            "min": 1,
            "max": 3,
        },
    )

    def active(self) -> bool:
        """Whether ``postprocess`` changes anything (else callers may skip it)."""
        return bool(self.opening or self.closing or self.fill_holes or self.min_size > 1 or self.keep_largest)


def _label_dtype(num_labels: int) -> type:
    return np.uint8 if num_labels <= 256 else np.int32


def scores_to_labels(
    logits: torch.Tensor, threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(label maps, foreground probability) of a batch of (B, C, *spatial) logits: the one place scores
    become labels (evaluation, the Tester, the Predictor, the processor's post-processing, the demos).

    C = 1: one sigmoid channel, foreground where sigmoid(logit) >= ``threshold`` (NaN: background).
    C >= 2: softmax channels, the argmax (ties: the lower class), ``threshold`` unused; the probability
    is class 1's for C = 2 and None above.
    """
    if logits.dim() < 3 or logits.shape[1] < 1:
        raise ValueError(f"expected (B, C, H, W) or (B, C, D, H, W) logits, got shape {tuple(logits.shape)}")
    logits = logits.float()
    if logits.shape[1] == 1:
        probability = torch.sigmoid(logits[:, 0])
        return (probability >= threshold).long(), probability
    probability = torch.softmax(logits, 1)[:, 1] if logits.shape[1] == 2 else None
    return logits.argmax(1), probability


def labels_from_logits(logits: Any, threshold: float = 0.5) -> np.ndarray:
    """``scores_to_labels`` of one image's (C, *spatial) logits as a numpy label map (uint8 up to 256)."""
    array = to_numpy(logits, "logits")
    if array.ndim < 2 or array.shape[0] < 1:
        raise ValueError(f"expected (C, H, W) or (C, D, H, W) logits, got shape {array.shape}")
    labels, _ = scores_to_labels(torch.from_numpy(np.ascontiguousarray(array))[None], threshold)
    return labels[0].numpy().astype(_label_dtype(array.shape[0]))


def ball(radius: int, ndim: int) -> np.ndarray:
    """Boolean disk (ndim 2) or ball (ndim 3) of diameter 2r + 1: points within r + 0.5 of the centre."""
    offsets = np.indices((2 * radius + 1,) * ndim) - radius
    return (offsets**2).sum(axis=0) <= radius * radius + radius  # integer form of d <= r + 0.5


def _open(mask: np.ndarray, radius: int) -> np.ndarray:
    return ndimage.binary_opening(mask, structure=ball(radius, mask.ndim), iterations=1)


def _close(mask: np.ndarray, radius: int) -> np.ndarray:
    # scipy's erosion treats the outside as background and would eat objects touching the border
    padded = np.pad(mask, radius)
    closed = ndimage.binary_closing(padded, structure=ball(radius, mask.ndim), iterations=1)
    return closed[(slice(radius, -radius),) * mask.ndim]


def _components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """(component index per pixel, size per index); index 0 is the background."""
    structure = ndimage.generate_binary_structure(mask.ndim, min(connectivity, mask.ndim))
    index, _ = ndimage.label(mask, structure=structure)
    return index, np.bincount(index.reshape(-1))


def remove_small(mask: np.ndarray, min_size: int, connectivity: int = 1) -> np.ndarray:
    """``mask`` without its connected components of fewer than ``min_size`` pixels."""
    index, sizes = _components(mask, connectivity)
    keep = sizes >= min_size
    keep[0] = False
    return keep[index]


def largest_component(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """The largest connected component of ``mask`` (ties: the first in C order); empty stays empty."""
    index, sizes = _components(mask, connectivity)
    if len(sizes) < 2:
        return mask.copy()
    return index == 1 + int(np.argmax(sizes[1:]))


def clean_mask(mask: np.ndarray, cfg: PostProcessConfig) -> np.ndarray:
    """One binary mask through the steps of the module docstring, in their order."""
    mask = np.asarray(mask, dtype=bool)
    if cfg.opening > 0:
        mask = _open(mask, cfg.opening)
    if cfg.closing > 0:
        mask = _close(mask, cfg.closing)
    if cfg.fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    if cfg.min_size > 1:
        mask = remove_small(mask, cfg.min_size, cfg.connectivity)
    if cfg.keep_largest:
        mask = largest_component(mask, cfg.connectivity)
    return mask


def postprocess(labels: Any, num_labels: int, cfg: PostProcessConfig) -> np.ndarray:
    """Cleaned copy of a 2D/3D label map (same dtype); class 0 is background and is not processed."""
    labels = to_numpy(labels, "labels")
    if labels.ndim not in (2, 3):
        raise ValueError(f"expected a 2D (H, W) or 3D (D, H, W) label map, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise ValueError(f"label {bad} outside [0, {num_labels})")
    if not cfg.active():
        return labels.copy()
    out = np.zeros_like(labels)
    for c in range(1, num_labels):
        mask = labels == c
        if mask.any():  # every step maps an empty mask to an empty one
            out[clean_mask(mask, cfg)] = c
    return out

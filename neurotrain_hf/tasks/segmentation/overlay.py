"""Error overlays of 2D segmentations (the palette, tints and label-map pictures are ``neurotrain_hf.drawing``'s).

``overlay`` blends a colour into every scored pixel: true positives green, false positives red,
false negatives blue. Per pixel, with label 0 as background:

- TP: prediction == reference != 0;
- FP: prediction != 0 and prediction != reference (a wrong foreground class is an FP, drawn once);
- FN: reference != 0 and prediction == 0;
- both 0: left as is.

With ``binary=True`` only foreground (label >= 1) against background counts, for masks stored as
0/255. Pixels outside the field of view are not scored (as in the FOV-masked metrics): they are left
uncoloured and dimmed to ``drawing.OUTSIDE_FOV`` of their brightness. Images are grey (H, W) or (H, W, 1), or
RGB (H, W, 3) (an alpha channel is dropped), uint8 or float in [0, 1] (clipped). 3D volumes: pass one
slice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...drawing import blend, dim_outside, label_map, to_rgb

TP_COLOUR = (0, 255, 0)
FP_COLOUR = (255, 0, 0)
FN_COLOUR = (0, 0, 255)


def overlay(
    image: Any,
    reference: Any,
    prediction: Any,
    fov: Any = None,
    alpha: float = 0.5,
    binary: bool = False,
) -> np.ndarray:
    """(H, W, 3) uint8: TP green, FP red, FN blue blended at ``alpha``; outside ``fov`` dimmed."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha}: expected a value in [0, 1]")
    rgb = to_rgb(image)
    ref = label_map(reference, "reference", rgb.shape[:2])
    pred = label_map(prediction, "prediction", rgb.shape[:2])
    if binary:
        ref, pred = ref >= 1, pred >= 1
    inside = dim_outside(rgb, fov)
    fg_ref, fg_pred = ref != 0, pred != 0
    blend(rgb, inside & fg_pred & (pred == ref), TP_COLOUR, alpha)
    blend(rgb, inside & fg_pred & (pred != ref), FP_COLOUR, alpha)
    blend(rgb, inside & fg_ref & ~fg_pred, FN_COLOUR, alpha)
    return rgb


def save_overlay(
    path: str | Path,
    image: Any,
    reference: Any,
    prediction: Any,
    fov: Any = None,
    alpha: float = 0.5,
    binary: bool = False,
) -> Path:
    """Write ``overlay(...)`` as a (lossless) PNG at ``path``, creating its folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = overlay(image, reference, prediction, fov=fov, alpha=alpha, binary=binary)
    Image.fromarray(picture).save(path, format="PNG")
    return path

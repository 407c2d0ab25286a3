"""Drawn detections: reference boxes in green, predictions (score >= threshold) in the class colour with
their label and score, predicted instance masks tinted; a lossless PNG per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..segmentation.overlay import PALETTE

REFERENCE = (40, 220, 40)


def render(
    image: np.ndarray,
    prediction: dict[str, Any],
    reference: dict[str, Any] | None,
    names: list[str],
    threshold: float,
) -> Image.Image:
    """(H, W, 3) uint8 image with the boxes (and masks) drawn."""
    picture = image.astype(np.float32)
    keep = (prediction["scores"] >= threshold).cpu().numpy()
    labels = prediction["labels"].cpu().numpy()[keep]
    if "masks" in prediction:
        for mask, label in zip(prediction["masks"].cpu().numpy()[keep], labels):
            colour = np.asarray(PALETTE[(int(label) + 1) % len(PALETTE)], np.float32)
            picture[mask.astype(bool)] = 0.5 * picture[mask.astype(bool)] + 0.5 * colour
    canvas = Image.fromarray(picture.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    if reference is not None:
        for box in reference["boxes"].cpu().numpy():
            draw.rectangle([float(v) for v in box], outline=REFERENCE, width=1)
    for box, label, score in zip(
        prediction["boxes"].cpu().numpy()[keep], labels, prediction["scores"].cpu().numpy()[keep]
    ):
        colour = tuple(int(c) for c in PALETTE[(int(label) + 1) % len(PALETTE)])
        draw.rectangle([float(v) for v in box], outline=colour, width=2)
        name = names[int(label)] if int(label) < len(names) else str(int(label))
        draw.text((float(box[0]) + 2, float(box[1]) + 1), f"{name} {score:.2f}", fill=colour)
    return canvas


def draw_detections(
    path: str | Path,
    image: np.ndarray,
    prediction: dict,
    reference: dict | None,
    names: list[str],
    threshold: float,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    render(image, prediction, reference, names, threshold).save(path)
    return path

"""Drawing helpers every task shares: the label palette, label maps as pictures, tinted overlays, boxes.

Images are grey (H, W) or (H, W, 1), or RGB (H, W, 3) (an alpha channel is dropped), uint8 or float in
[0, 1] (clipped); the results are (H, W, 3) uint8 arrays or lossless PNG files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .metrics.common import to_numpy

OUTSIDE_FOV = 0.3  # brightness factor of pixels outside a field of view / region of interest


def _voc_palette() -> np.ndarray:
    """The PASCAL VOC label palette: 0 black, 1 (128, 0, 0), 2 (0, 128, 0), ...; known to mask viewers."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        value, shift = label, 7
        while value:
            for channel in range(3):
                palette[label, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return palette


PALETTE = _voc_palette()  # (256, 3) uint8, colour of each label in multi-class PNGs and tints


def to_rgb(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 copy of a grey or RGB image, uint8 or float in [0, 1]."""
    image = to_numpy(image, "image")
    if image.ndim == 3 and image.shape[-1] in (1, 3, 4):
        image = image[..., 0] if image.shape[-1] == 1 else image[..., :3]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a grey (H, W) or RGB (H, W, 3) image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.copy()
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    raise TypeError(f"image dtype {image.dtype}: expected uint8, or float in [0, 1]")


def label_map(labels: Any, what: str, shape: tuple[int, ...]) -> np.ndarray:
    labels = to_numpy(labels, what)
    if labels.shape != shape:
        raise ValueError(f"{what} shape {labels.shape} != image shape {shape}")
    return labels


def blend(rgb: np.ndarray, where: np.ndarray, colour: Any, alpha: float) -> None:
    """In place: ``where`` pixels become (1 - alpha) * pixel + alpha * colour (one, or one per pixel)."""
    mixed = (1.0 - alpha) * rgb[where].astype(np.float64) + alpha * np.asarray(colour, dtype=np.float64)
    rgb[where] = np.rint(mixed).astype(np.uint8)


def dim_outside(rgb: np.ndarray, fov: Any) -> np.ndarray:
    """Boolean FOV mask (all True when ``fov`` is None); dims the pixels outside it in place."""
    if fov is None:
        return np.ones(rgb.shape[:2], dtype=bool)
    inside = label_map(fov, "fov", rgb.shape[:2]) != 0
    rgb[~inside] = np.rint(rgb[~inside] * OUTSIDE_FOV).astype(np.uint8)
    return inside


def overlay_prediction(image: Any, prediction: Any, fov: Any = None, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 without a reference: each foreground class tinted with its ``PALETTE`` colour."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha}: expected a value in [0, 1]")
    rgb = to_rgb(image)
    pred = label_map(prediction, "prediction", rgb.shape[:2]).astype(np.int64)
    if pred.size and (pred.min() < 0 or pred.max() > 255):
        raise ValueError(f"prediction labels must lie in [0, 255], got [{pred.min()}, {pred.max()}]")
    inside = dim_outside(rgb, fov)
    where = inside & (pred != 0)
    blend(rgb, where, PALETTE[pred[where]], alpha)
    return rgb


def mask_to_png_array(labels: Any, num_labels: int | None = None) -> np.ndarray:
    """uint8 picture of a 2D label map: binary -> (H, W) 0/255; multi-class -> (H, W, 3) ``PALETTE`` colours.

    Binary means ``num_labels <= 2``, or, without ``num_labels``, no label above 1; pass ``num_labels``
    so that every image of a multi-class dataset gets colours, even one holding only labels 0 and 1.
    """
    labels = to_numpy(labels, "labels")
    if labels.ndim != 2:
        raise ValueError(f"expected a 2D (H, W) label map, got shape {labels.shape}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels must lie in [0, 255] for a PNG, got [{labels.min()}, {labels.max()}]")
    binary = num_labels <= 2 if num_labels is not None else not labels.size or labels.max() <= 1
    if binary:
        return np.where(labels != 0, 255, 0).astype(np.uint8)
    return PALETTE[labels]


REFERENCE = (40, 220, 40)


def render_detections(
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
    render_detections(image, prediction, reference, names, threshold).save(path)
    return path

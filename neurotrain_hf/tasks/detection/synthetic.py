"""``synthetic_shapes_detection``: seeded 96x96 RGB images of circles, squares and triangles, built in memory.

Each image has a noisy grey background and 0-4 shapes in distinct saturated colours (no background pixel
can take a shape colour) whose boxes do not overlap. Boxes are tight around the drawn pixels, ``area`` is
the drawn pixel count and ``segmentation`` the drawn polygon (a circle is a 24-gon). Images are stored as
PNG bytes (``{"bytes", "path": None}``); rows follow ``sources.DETECTION_FEATURES``. Every image depends only
on its split and index, so ``max_samples`` keeps a prefix of the full set.
"""

from __future__ import annotations

import io
import json
import math

import datasets
import numpy as np
from PIL import Image, ImageDraw

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource, register_dataset
from .sources import DetectionSource, detection_split

NAME = "synthetic_shapes_detection"
CATEGORIES = ["circle", "square", "triangle"]
SIZE = 96
SPLIT_SIZES = {"train": 600, "valid": 100, "test": 100}
SEED = 20240611
# saturated colours: every channel <= 40 or >= 200, while the background stays within [60, 160]
COLOURS = [(230, 30, 30), (30, 220, 30), (30, 30, 230), (240, 240, 20), (230, 20, 230), (20, 230, 230)]


def _polygon(kind: int, cx: float, cy: float, r: float, angle: float) -> list[float]:
    """Vertices (x1, y1, x2, y2, ...) of a circle (24-gon), an axis-aligned square or a triangle."""
    if kind == 1:
        return [cx - r, cy - r, cx + r, cy - r, cx + r, cy + r, cx - r, cy + r]
    n, start = (24, 0.0) if kind == 0 else (3, angle)
    points = [
        (cx + r * math.cos(start + 2 * math.pi * i / n), cy + r * math.sin(start + 2 * math.pi * i / n))
        for i in range(n)
    ]
    return [round(v, 2) for point in points for v in point]


def _image(split: str, index: int) -> dict:
    """One row: the PNG and its objects, from a generator seeded by (split, index)."""
    rng = np.random.default_rng([SEED, list(SPLIT_SIZES).index(split), index])
    base = rng.integers(80, 141, 3)
    pixels = np.clip(base + rng.normal(0, 8, (SIZE, SIZE, 3)), 60, 160).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    count = 0 if rng.random() < 0.1 else int(rng.integers(1, 5))
    colours = rng.permutation(len(COLOURS))
    boxes: list[tuple[float, ...]] = []
    objects = []
    for _ in range(count * 20):  # rejection sampling: boxes 3 px apart
        if len(objects) == count:
            break
        kind, r = int(rng.integers(0, 3)), float(rng.uniform(6, 14))
        cx, cy = rng.uniform(r + 1, SIZE - r - 1, 2)
        if any(
            cx + r + 3 > b[0] and b[2] + 3 > cx - r and cy + r + 3 > b[1] and b[3] + 3 > cy - r for b in boxes
        ):
            continue
        polygon = _polygon(kind, float(cx), float(cy), r, float(rng.uniform(0, 2 * math.pi)))
        mask = Image.new("L", (SIZE, SIZE))
        ImageDraw.Draw(mask).polygon(polygon, fill=1)
        drawn = np.asarray(mask, dtype=bool)
        if drawn.sum() < 4:
            continue
        ys, xs = np.nonzero(drawn)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        colour = COLOURS[colours[len(objects)]]
        image.paste(colour, (0, 0), mask.point(lambda v: 255 * v))
        boxes.append((cx - r, cy - r, cx + r, cy + r))
        objects.append(
            {"bbox": list(box), "category": kind, "area": float(drawn.sum()), "iscrowd": 0}
            | {"segmentation": json.dumps([polygon]), "id": index * 10 + len(objects) + 1}
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {
        "image": {"bytes": buffer.getvalue(), "path": None},
        "image_id": index,
        "id": f"{split}_{index:04d}",
        "width": SIZE,
        "height": SIZE,
        "objects": objects,
        "source": NAME,
    }


@register_dataset(NAME)
def synthetic_shapes_detection(cfg: DatasetConfig) -> DatasetSource:
    """Deterministic shapes (train 600 / valid 100 / test 100, capped by ``max_samples``); no files."""
    splits = {}
    for split, size in SPLIT_SIZES.items():
        n = min(size, cfg.max_samples) if cfg.max_samples else size
        splits[split] = detection_split([_image(split, i) for i in range(n)])
    source = DetectionSource(
        datasets.DatasetDict(splits), label_column="objects", categories=list(CATEGORIES)
    )
    return source

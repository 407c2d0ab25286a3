"""Embedded diffusion data (offline defaults): coloured shapes with a class each, and vessel-like masks
with their retina-like images (mask-conditioned synthesis). Deterministic in (seed, index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES = ("red circle", "green square", "blue triangle", "yellow cross")
_COLOURS = ((215, 45, 45), (45, 185, 65), (55, 85, 230), (230, 205, 45))


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def draw_shape(label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One (size, size, 3) uint8 image: class ``label``'s shape and colour (jittered hue, position and
    radius) on a dark noisy background."""
    scale = 4  # drawn 4x larger and reduced with a box filter: smooth edges
    big = size * scale
    background = rng.integers(10, 50, 3)
    image = Image.new("RGB", (big, big), tuple(int(v) for v in background))
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.22, 0.34) * big
    cy, cx = rng.uniform(radius + 2, big - radius - 2, 2)
    colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in _COLOURS[label])
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if label == 0:
        draw.ellipse(box, fill=colour)
    elif label == 1:
        draw.rectangle(
            (cx - radius * 0.85, cy - radius * 0.85, cx + radius * 0.85, cy + radius * 0.85), fill=colour
        )
    elif label == 2:
        draw.polygon(
            [(cx, cy - radius), (cx - radius, cy + radius * 0.8), (cx + radius, cy + radius * 0.8)],
            fill=colour,
        )
    else:
        arm = radius * 0.32
        draw.rectangle((cx - radius, cy - arm, cx + radius, cy + arm), fill=colour)
        draw.rectangle((cx - arm, cy - radius, cx + arm, cy + radius), fill=colour)
    small = np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    small += rng.normal(0.0, 4.0, small.shape)
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


def color_shapes(n: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, size, size, 3) uint8, labels (n,)): classes in turn, so every class has n/4 images."""
    labels = np.arange(n) % len(SHAPE_CLASSES)
    images = np.stack([draw_shape(int(label), _rng(seed, i), size) for i, label in enumerate(labels)])
    return images, labels.astype(np.int64)


def vessel_pair(rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A retina-like patch (size, size, 3) uint8 and its vessel mask (size, size) uint8 in {0, 1}:
    2-4 smooth branches of varying width, darker and redder than the orange background."""
    scale = 4
    big = size * scale
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(2, 5))):
        start = rng.uniform(0, big, 2)
        angle = rng.uniform(0, 2 * np.pi)
        width = rng.uniform(1.2, 3.2) * scale
        points = [tuple(start)]
        for _ in range(12):
            angle += rng.normal(0, 0.35)
            start = start + 0.11 * big * np.array([np.cos(angle), np.sin(angle)])
            points.append(tuple(start))
        draw.line(points, fill=255, width=max(1, int(width)), joint="curve")
    vessels = np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0
    yy, xx = np.mgrid[0:size, 0:size] / size
    shade = 0.75 + 0.25 * np.cos(np.pi * (xx - rng.uniform(0.3, 0.7))) * np.cos(np.pi * (yy - 0.5))
    base = np.array([205.0, 105.0, 45.0]) * shade[..., None]
    vessel = np.array([120.0, 30.0, 25.0])
    image = base * (1 - vessels[..., None]) + vessel * vessels[..., None]
    image += rng.normal(0.0, 5.0, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), (vessels >= 0.5).astype(np.uint8)


def vessel_patches(n: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, size, size, 3) uint8, masks (n, size, size) uint8)."""
    pairs = [vessel_pair(_rng(seed, i), size) for i in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def write_class_folders(root: str | Path, splits: dict[str, int], seed: int = 0, size: int = 32) -> Path:
    """The coloured shapes as an ``imagefolder`` tree ``root/<split>/<class>/<i>.png`` (what a classifier
    of the classification task reads); each split draws from its own seed range."""
    root = Path(root)
    for offset, (split, count) in enumerate(splits.items()):
        images, labels = color_shapes(count, seed=seed * 1000 + offset, size=size)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / SHAPE_CLASSES[label].replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:05d}.png")
    return root


def write_pair_folders(root: str | Path, splits: dict[str, int], seed: int = 0, size: int = 32) -> Path:
    """The vessel patches as ``root/<split>/images/<i>.png`` + ``masks/<i>.png`` (0/255): the
    ``segmentation_folder`` layout; each split draws from its own seed range, as the ``vessel_patches``
    source does (same images)."""
    root = Path(root)
    for offset, (split, count) in enumerate(splits.items()):
        images, masks = vessel_patches(count, seed=seed * 1000 + offset, size=size)
        for folder in ("images", "masks"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i, (image, mask) in enumerate(zip(images, masks)):
            Image.fromarray(image).save(root / split / "images" / f"{i:05d}.png")
            Image.fromarray(mask * 255).save(root / split / "masks" / f"{i:05d}.png")
    return root

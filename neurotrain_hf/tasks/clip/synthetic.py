"""The embedded CLIP dataset: rendered shapes with templated captions (offline default, no download).

Each image holds one shape with four attributes (shape, colour, size, quadrant) drawn on a noisy
background with jittered position, size and hue; its captions describe all four in several phrasings,
so retrieval is well-posed when every held-out image has its own attribute combination.
"""

from __future__ import annotations

import itertools

import datasets
import numpy as np

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource, register_dataset

IMAGE_SIZE = 32
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (230, 210, 40),
}
SIZES = {"small": 0.28, "large": 0.46}  # shape radius as a fraction of the image side
POSITIONS = {
    "top left": (0.27, 0.27),
    "top right": (0.27, 0.73),
    "bottom left": (0.73, 0.27),
    "bottom right": (0.73, 0.73),
}
TEMPLATES = (
    "a {size} {colour} {shape} at the {position}",
    "{size} {colour} {shape}, {position}",
    "a {colour} {shape} that is {size}, in the {position} corner",
    "the {position} holds a {size} {colour} {shape}",
    "{position}: a {colour} {shape}, {size}",
)


def combinations() -> list[tuple[str, str, str, str]]:
    """Every (shape, colour, size, position) combination, in a fixed order."""
    return list(itertools.product(SHAPES, COLOURS, SIZES, POSITIONS))


def captions(shape: str, colour: str, size: str, position: str) -> list[str]:
    return [t.format(shape=shape, colour=colour, size=size, position=position) for t in TEMPLATES]


def _mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        return dy**2 + dx**2 <= r**2
    if shape == "square":
        side = r * 0.85
        return (np.abs(dy) <= side) & (np.abs(dx) <= side)
    if shape == "triangle":  # apex up: inside when below the two slanted edges and above the base
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    arm = r * 0.35  # cross
    return ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))


def render(combo: tuple[str, str, str, str], size: int, rng: np.random.Generator) -> np.ndarray:
    """One HWC uint8 image of a combination, with random jitter."""
    shape, colour, scale, position = combo
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.uniform(20, 70)
    image = base + rng.normal(0, 8, (size, size, 3))
    cy, cx = (np.array(POSITIONS[position]) + rng.uniform(-0.05, 0.05, 2)) * size
    radius = SIZES[scale] * size / 2 * rng.uniform(0.85, 1.15)
    mask = _mask(shape, yy, xx, cy, cx, radius)
    rgb = np.clip(np.array(COLOURS[colour], dtype=np.float32) + rng.normal(0, 15, 3), 0, 255)
    image[mask] = rgb + rng.normal(0, 6, (int(mask.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def generate(num_samples: int, size: int, seed: int, distinct: bool = False) -> dict[str, list]:
    """``image`` (HWC uint8), ``captions`` (5 each), ``label`` (shape index) for ``num_samples`` images.

    ``distinct``: every image gets its own combination (at most ``len(combinations())`` images), so a
    held-out split has exactly one correct image per caption.
    """
    rng = np.random.default_rng(seed)
    combos = combinations()
    if distinct:
        if num_samples > len(combos):
            raise ValueError(f"at most {len(combos)} distinct combinations, asked for {num_samples}")
        chosen = [combos[i] for i in rng.permutation(len(combos))[:num_samples]]
    else:
        chosen = [combos[i] for i in rng.integers(0, len(combos), num_samples)]
    return {
        "image": [render(c, size, rng) for c in chosen],
        "captions": [captions(*c) for c in chosen],
        "label": [SHAPES.index(c[0]) for c in chosen],
    }


def synthetic_split(num_samples: int, size: int, seed: int, distinct: bool = False):
    """A ``datasets`` split of ``generate`` (fixed-shape uint8 images, a ``label`` of shape names)."""
    data = generate(num_samples, size, seed, distinct)
    features = datasets.Features(
        {
            "image": datasets.Array3D(shape=(size, size, 3), dtype="uint8"),
            "captions": datasets.Sequence(datasets.Value("string")),
            "image_id": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(SHAPES)),
        }
    )
    data["image_id"] = [f"{seed}-{i}" for i in range(num_samples)]
    return datasets.Dataset.from_dict(data, features=features)


@register_dataset("synthetic_shapes")
def synthetic_shapes(cfg: DatasetConfig) -> DatasetSource:
    """Rendered shapes with captions: ``max_samples`` (default 12,000) training images, and valid and
    test splits of distinct combinations (one correct image per caption)."""
    train = cfg.max_samples or 12000
    held_out = min(len(combinations()), max(8, train // 10))
    splits = {
        "train": synthetic_split(train, IMAGE_SIZE, seed=cfg.sampling_seed),
        "valid": synthetic_split(held_out, IMAGE_SIZE, seed=cfg.sampling_seed + 1, distinct=True),
        "test": synthetic_split(held_out, IMAGE_SIZE, seed=cfg.sampling_seed + 2, distinct=True),
    }
    return DatasetSource(datasets.DatasetDict(splits))

"""An embedded, deterministic synthetic retina: branching vessels on a textured fundus-like disc.

Each image is a function of (seed, index) only. A circular field of view (FOV) holds a reddish
fundus with uneven illumination, low-frequency texture and noise, a bright optic disc, and a vessel
tree grown from the disc: branches of decreasing width (about 1 to 4 px) and varying contrast, drawn
darker than the background and slightly blurred. The mask is the vessel tree inside the FOV.
"""

from __future__ import annotations

import math

import datasets
import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource, register_dataset


def _texture(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a coarse random grid upsampled bicubically."""
    coarse = rng.uniform(-1, 1, (max(size // scale, 2), max(size // scale, 2))).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC))


def _grow(draw: ImageDraw.ImageDraw, rng, x, y, angle, width, length, depth, contrast, out) -> None:
    """Draw one branch as jittered segments; it splits into two thinner branches at its end."""
    step = 4.0
    for _ in range(int(length / step)):
        angle += rng.normal(0, 0.18)
        nx, ny = x + step * math.cos(angle), y + step * math.sin(angle)
        draw.line([(x, y), (nx, ny)], fill=255, width=max(int(round(width)), 1))
        out.append((x, y, nx, ny, width, contrast))
        x, y = nx, ny
    if depth > 0 and width > 1.2:
        for side in (-1, 1):
            _grow(
                draw,
                rng,
                x,
                y,
                angle + side * rng.uniform(0.35, 0.8),
                width * rng.uniform(0.65, 0.85),
                length * rng.uniform(0.55, 0.8),
                depth - 1,
                contrast * rng.uniform(0.8, 1.0),
                out,
            )


def synthetic_retina(index: int, size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image HxWx3 uint8, vessel mask HxW uint8 {0,1}, FOV mask HxW uint8 {0,1}) for one sample."""
    rng = np.random.default_rng([seed, index, 20260])
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    c = (size - 1) / 2
    radius = size * rng.uniform(0.44, 0.48)
    fov = ((yy - c) ** 2 + (xx - c) ** 2 <= radius**2).astype(np.uint8)
    # optic disc on the left or right of the centre; vessels grow from it
    dx = rng.choice([-1, 1]) * radius * rng.uniform(0.35, 0.5)
    dy = rng.uniform(-0.15, 0.15) * radius
    disc_x, disc_y = c + dx, c + dy
    mask_img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask_img)
    segments: list[tuple] = []
    for k in range(rng.integers(4, 7)):
        angle = 2 * math.pi * k / 6 + rng.normal(0, 0.3)
        _grow(
            draw,
            rng,
            disc_x,
            disc_y,
            angle,
            rng.uniform(2.6, 3.8),
            size * rng.uniform(0.28, 0.4),
            3,
            rng.uniform(0.35, 0.6),
            segments,
        )
    vessels = (np.asarray(mask_img) > 0).astype(np.uint8) * fov
    # darkening map: each segment drawn with its own contrast, softened by a blur
    dark_img = Image.new("F", (size, size), 0.0)
    dark = ImageDraw.Draw(dark_img)
    for x0, y0, x1, y1, width, contrast in segments:
        dark.line([(x0, y0), (x1, y1)], fill=float(contrast), width=max(int(round(width)), 1))
    darkening = gaussian_filter(np.asarray(dark_img, dtype=np.float32), 0.6)
    illumination = 0.75 + 0.25 * (1 - ((xx - c) ** 2 + (yy - c) ** 2) / radius**2).clip(0, 1)
    texture = 0.08 * _texture(rng, size, 8) + 0.04 * _texture(rng, size, 3)
    disc = np.exp(-((xx - disc_x) ** 2 + (yy - disc_y) ** 2) / (2 * (radius * 0.12) ** 2))
    base = np.stack([0.85, 0.42, 0.2])[None, None, :] * (illumination + texture)[..., None]
    base = base + 0.5 * disc[..., None]
    image = base * (1 - darkening[..., None]) + rng.normal(0, 0.03, (size, size, 3))
    image = (image.clip(0, 1) * 255).round().astype(np.uint8) * fov[..., None]
    return image, vessels, fov


def synthetic_retina_arrays(count: int, size: int = 96, seed: int = 0, start: int = 0):
    """``count`` samples stacked: images (N, H, W, 3), masks (N, H, W), FOVs (N, H, W), all uint8."""
    samples = [synthetic_retina(start + i, size, seed) for i in range(count)]
    return tuple(np.stack(parts) for parts in zip(*samples))


SPLIT_SIZES = {"train": 48, "valid": 8, "test": 16}
SPLIT_OFFSETS = {"train": 0, "valid": 10_000, "test": 20_000}  # disjoint sample indices per split


def synthetic_split(name: str, count: int, size: int = 96) -> datasets.Dataset:
    """One split as fixed-shape columns (zero-copy batch reads), with ids and the source name."""
    images, masks, fovs = synthetic_retina_arrays(count, size, seed=0, start=SPLIT_OFFSETS[name])
    features = datasets.Features(
        {
            "image": datasets.Array3D((size, size, 3), "uint8"),
            "mask": datasets.Array2D((size, size), "uint8"),
            "fov": datasets.Array2D((size, size), "uint8"),
            "id": datasets.Value("string"),
            "source": datasets.Value("string"),
        }
    )
    ids = [f"{name}_{i:03d}" for i in range(count)]
    data = {"image": images, "mask": masks, "fov": fovs, "id": ids, "source": ["synthetic_retina"] * count}
    return datasets.Dataset.from_dict(data, features=features)


@register_dataset("synthetic_retina")
def synthetic_retina_source(cfg: DatasetConfig) -> DatasetSource:
    """The embedded synthetic retina (48 train / 8 valid / 16 test images of 96 px; ``max_samples`` caps)."""
    sizes = {k: min(v, cfg.max_samples or v) for k, v in SPLIT_SIZES.items()}
    return DatasetSource(datasets.DatasetDict({k: synthetic_split(k, n) for k, n in sizes.items()}))

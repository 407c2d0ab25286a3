"""Dataset registry: ``register_dataset(name)`` decorates a builder ``(DatasetConfig) -> DatasetSource``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from ..config.sections import DatasetConfig
from ..registry import Registry


@dataclass
class DatasetSource:
    """What a builder returns: the raw splits (``train``/``valid``/``test``, any subset) and defaults."""

    splits: datasets.DatasetDict
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    image_column: str = "image"
    label_column: str = "label"
    volume: Any = None  # volumetric sources: a ``tasks.segmentation.volume_spec.VolumeSpec``
    categories: list[str] | None = None  # detection sources: category names, index = training label


DATASETS: Registry[Callable[[DatasetConfig], DatasetSource]] = Registry("dataset")
register_dataset = DATASETS.register

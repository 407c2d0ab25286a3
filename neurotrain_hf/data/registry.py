"""Dataset registry: ``register_dataset(name)`` decorates a builder ``(DatasetConfig) -> DatasetSource``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import datasets

from ..config.sections import DatasetConfig
from ..registry import Registry


@dataclass
class DatasetSource:
    """What a builder returns: the raw splits (``train``/``valid``/``test``, any subset) and defaults.
    Tasks subclass it for what only they need (a volume spec, detection categories)."""

    splits: datasets.DatasetDict
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    image_column: str = "image"
    label_column: str = "label"
    skipped: list[str] = field(default_factory=list)  # files skipped as unreadable (skip_bad_samples)


DATASETS: Registry[Callable[[DatasetConfig], DatasetSource]] = Registry("dataset")
register_dataset = DATASETS.register

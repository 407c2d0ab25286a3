"""NeuroTrain's data entry points: ``get_dataset``, per-split getters, ``random_sample`` and dataloaders.

Each returns ``datasets`` objects prepared by the configured task (``Task.prepare_data``): a
``DatasetDict`` with ``train``/``valid``/``test`` splits and the task's transforms attached by
``set_transform`` (random operations on ``train`` only).
"""

from __future__ import annotations

import datasets
import numpy as np

from ..config.experiment import ExperimentConfig
from ..errors import DataError
from .loader import make_dataloader
from .splits import SPLITS


def prepare_data(config: ExperimentConfig):
    """The task's ``TaskData`` (splits, info, processor, report) for a config."""
    from ..tasks import get_task

    return get_task(config.basic.task).load().prepare_data(config)


def get_dataset(config: ExperimentConfig) -> datasets.DatasetDict:
    """All splits with transforms attached; ``dataset_info`` (``neurotrain_info``) rides along."""
    data = prepare_data(config)
    data.splits.neurotrain_info = data.info  # type: ignore[attr-defined]
    return data.splits


def dataset_info(dsd: datasets.DatasetDict):
    return dsd.neurotrain_info  # type: ignore[attr-defined]


def _get_split(config: ExperimentConfig, split: str) -> datasets.Dataset:
    dsd = get_dataset(config)
    if split not in dsd:
        raise DataError(f"[dataset] {config.dataset.name}: no {split!r} split (have {', '.join(dsd)})")
    return dsd[split]


def get_train_dataset(config: ExperimentConfig) -> datasets.Dataset:
    return _get_split(config, "train")


def get_valid_dataset(config: ExperimentConfig) -> datasets.Dataset:
    return _get_split(config, "valid")


def get_test_dataset(config: ExperimentConfig) -> datasets.Dataset:
    return _get_split(config, "test")


def random_sample(dataset: datasets.Dataset, n: int, seed: int | None = None) -> datasets.Dataset:
    """``n`` samples drawn without replacement (all of them if the dataset is smaller)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    return dataset.select(sorted(idx.tolist()))


def get_train_valid_test_dataloader(config: ExperimentConfig):
    """(train, valid, test) DataLoaders (None for a missing split) with batched Arrow fetches."""
    dsd = get_dataset(config)
    args = config.training
    loaders = []
    for name in SPLITS:
        if name not in dsd:
            loaders.append(None)
            continue
        bs = args.per_device_train_batch_size if name == "train" else args.per_device_eval_batch_size
        loaders.append(
            make_dataloader(
                dsd[name],
                bs,
                shuffle=name == "train",
                seed=config.basic.seed,
                num_workers=args.dataloader_num_workers,
            )
        )
    return tuple(loaders)

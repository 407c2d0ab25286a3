"""Data core shared by every task: dataset registry, splits, images, processor, batch-fetching loaders."""

from . import (
    hybrid,  # noqa: F401  (registers the "hybrid" dataset)
    parquet,  # noqa: F401  (registers the "parquet" dataset: `neurotrain to-parquet` output)
    shards,  # noqa: F401  (registers the "webdataset" dataset: .tar shards)
)
from .api import (
    dataset_info,
    get_dataset,
    get_test_dataset,
    get_train_dataset,
    get_train_valid_test_dataloader,
    get_valid_dataset,
    prepare_data,
    random_sample,
)
from .loader import BatchFetchDataset, make_dataloader
from .registry import DATASETS, DatasetSource, register_dataset


def list_datasets(pattern: str = "*") -> list[str]:
    """Every task's registered datasets."""
    from ..tasks import load_all_sources

    load_all_sources()
    return DATASETS.list(pattern)


__all__ = [
    "DATASETS",
    "BatchFetchDataset",
    "DatasetSource",
    "dataset_info",
    "get_dataset",
    "get_test_dataset",
    "get_train_dataset",
    "get_train_valid_test_dataloader",
    "get_valid_dataset",
    "list_datasets",
    "make_dataloader",
    "prepare_data",
    "random_sample",
    "register_dataset",
]

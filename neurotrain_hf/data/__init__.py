"""Datasets: registry of sources, splits, transforms and batch-fetching loaders."""

from . import classification_sources  # noqa: F401  (registers the built-in datasets)
from .api import (
    DatasetInfo,
    dataset_info,
    get_dataset,
    get_test_dataset,
    get_train_dataset,
    get_train_valid_test_dataloader,
    get_valid_dataset,
    load_splits,
    random_sample,
)
from .loader import BatchFetchDataset, make_dataloader
from .registry import DATASETS, DatasetSource, list_datasets, register_dataset

__all__ = [
    "DATASETS",
    "BatchFetchDataset",
    "DatasetInfo",
    "DatasetSource",
    "dataset_info",
    "get_dataset",
    "get_test_dataset",
    "get_train_dataset",
    "get_train_valid_test_dataloader",
    "get_valid_dataset",
    "list_datasets",
    "load_splits",
    "make_dataloader",
    "random_sample",
    "register_dataset",
]

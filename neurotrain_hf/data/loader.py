"""A datasets-backed loader that fetches whole batches: one Arrow ``take`` and one transform per batch.

``BatchFetchDataset`` implements ``__getitems__``, which PyTorch's DataLoader calls with a batch of
indices; it reads them through a zero-copy ``numpy`` view of the ``datasets.Dataset`` and applies the
split's ``set_transform`` transform to the whole batch. Samplers, sharding and resumption stay the
DataLoader's and Accelerate's.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch


def dataset_transform(ds: datasets.Dataset):
    """The transform attached with ``set_transform``/``with_transform``, or None."""
    fmt = ds.format
    return fmt["format_kwargs"].get("transform") if fmt.get("type") == "custom" else None


class BatchFetchDataset(torch.utils.data.Dataset):
    """Map-style torch dataset over a ``datasets.Dataset``, reading batches instead of rows."""

    def __init__(self, dataset: datasets.Dataset) -> None:
        self.dataset = dataset
        self.transform = dataset_transform(dataset)
        columns = dataset.format.get("columns") or dataset.column_names
        self._view = dataset.with_format("numpy", columns=columns)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        batch = self._view[list(indices)]
        return self.transform(batch) if self.transform is not None else batch

    def __getitem__(self, index: int) -> dict[str, Any]:
        batch = self.__getitems__([index])
        return {k: v[0] for k, v in batch.items()}


def passthrough_collate(batch: Any) -> Any:
    """The batch is already collated by ``__getitems__``; single rows (lists of dicts) get stacked."""
    if isinstance(batch, list):
        return torch.utils.data.default_collate(batch)
    return batch


def make_dataloader(
    dataset: datasets.Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader over ``BatchFetchDataset(dataset)``; shuffling uses its own seeded generator."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return torch.utils.data.DataLoader(
        BatchFetchDataset(dataset),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=passthrough_collate,
    )

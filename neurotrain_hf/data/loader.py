"""A datasets-backed loader that fetches whole batches: one gather and one transform per batch.

``BatchFetchDataset`` implements ``__getitems__``, which PyTorch's DataLoader calls with a batch of
indices. Fixed-shape columns (``Array2D``..``Array5D``, numeric ``Value``/``ClassLabel``) are read
through zero-copy numpy views of the dataset's Arrow buffers (memory-mapped when the dataset is on
disk), so a batch costs one numpy gather; other columns (``Image``, strings) go through a ``numpy``
formatted view of the ``datasets.Dataset``. The split's ``set_transform`` transform is then applied to
the whole batch, with torch's RNG seeded from (seed, epoch, sample indices) for the duration of the
call, so any random transform is reproducible whatever the fetch order, workers or resume point.
Samplers, sharding and resumption stay the DataLoader's and Accelerate's.
"""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch

_ARRAY_FEATURES = (datasets.Array2D, datasets.Array3D, datasets.Array4D, datasets.Array5D)


def dataset_transform(ds: datasets.Dataset):
    """The transform attached with ``set_transform``/``with_transform``, or None."""
    fmt = ds.format
    return fmt["format_kwargs"].get("transform") if fmt.get("type") == "custom" else None


class ColumnView:
    """Zero-copy numpy views of one fixed-shape Arrow column (one per chunk) with a batched gather."""

    def __init__(self, chunks: list[np.ndarray]) -> None:
        self.chunks = chunks
        self.starts = np.cumsum([0] + [len(c) for c in chunks])[:-1]

    @classmethod
    def from_column(cls, column: pa.ChunkedArray, feature: Any) -> ColumnView | None:
        """None when the column is not fixed-shape numeric or has nulls."""
        arrays = []
        for chunk in column.chunks:
            if chunk.null_count:
                return None
            if isinstance(feature, _ARRAY_FEATURES):
                values = chunk.storage
                for _ in feature.shape:
                    values = values.flatten()
                if values.null_count:
                    return None
                arrays.append(values.to_numpy(zero_copy_only=True).reshape(len(chunk), *feature.shape))
            elif isinstance(feature, (datasets.ClassLabel, datasets.Value)) and (
                pa.types.is_integer(chunk.type) or pa.types.is_floating(chunk.type)
            ):
                arrays.append(chunk.to_numpy(zero_copy_only=True))
            else:
                return None
        return cls(arrays)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        if len(self.chunks) == 1:
            return self.chunks[0][rows]
        which = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows), *self.chunks[0].shape[1:]), dtype=self.chunks[0].dtype)
        for c in np.unique(which):
            mask = which == c
            out[mask] = self.chunks[c][rows[mask] - self.starts[c]]
        return out


def _fixed_views(dataset: datasets.Dataset, columns: list[str]) -> dict[str, ColumnView]:
    """Zero-copy views of the fixed-shape columns among ``columns`` (the others are left out)."""
    table = dataset.data.table
    views = {}
    for name in columns:
        view = ColumnView.from_column(table.column(name), dataset.features[name])
        if view is not None:
            views[name] = view
    return views


def _row_mapping(dataset: datasets.Dataset) -> np.ndarray | None:
    """Row numbers behind a ``select``/``shuffle``/``train_test_split`` indices mapping, if any."""
    indices = getattr(dataset, "_indices", None)
    if indices is None:
        return None
    return indices.column(0).to_numpy()


class BatchFetchDataset(torch.utils.data.Dataset):
    """Map-style torch dataset over a ``datasets.Dataset``, reading batches instead of rows."""

    def __init__(self, dataset: datasets.Dataset, seed: int = 0, index_key: str | None = None) -> None:
        self.dataset = dataset
        self.seed = seed
        self.index_key = index_key
        self.epoch = 0
        self.transform = dataset_transform(dataset)
        self.columns = list(dataset.format.get("columns") or dataset.column_names)
        self._views = _fixed_views(dataset, self.columns)
        self._rows = _row_mapping(dataset) if self._views else None
        rest = [c for c in self.columns if c not in self._views]  # strings, lists, encoded images
        self._formatted = dataset.with_format("numpy", columns=rest) if rest else None

    @property
    def zero_copy(self) -> bool:
        """True when every column comes from zero-copy Arrow views (no per-row formatting)."""
        return self._formatted is None

    def __len__(self) -> int:
        return len(self.dataset)

    def fetch(self, indices: list[int]) -> dict[str, Any]:
        """The raw (untransformed) columns of ``indices``."""
        out = dict(self._formatted[list(indices)]) if self._formatted is not None else {}
        if self._views:
            rows = np.asarray(indices, dtype=np.int64)
            if self._rows is not None:
                rows = self._rows[rows]
            out.update({name: view.gather(rows) for name, view in self._views.items()})
        return {name: out[name] for name in self.columns}

    def set_epoch(self, epoch: int) -> None:
        """Called by Accelerate's loaders each epoch; part of the augmentation seed."""
        self.epoch = int(epoch)

    def batch_seed(self, indices: list[int]) -> int:
        """A seed from (seed, epoch, indices): augmentations independent of fetch order."""
        state = np.random.SeedSequence([self.seed, self.epoch, *map(int, indices)]).generate_state(
            2, np.uint32
        )
        return int(state[0]) << 32 | int(state[1])

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        batch = self.fetch(indices)
        if self.transform is not None:
            # Seed torch's CPU generator for this batch and restore it after: 3 us, where
            # fork_rng + manual_seed cost about 1 ms per batch.
            generator = torch.default_generator
            state = generator.get_state()
            generator.manual_seed(self.batch_seed(indices))
            try:
                batch = self.transform(batch)
            finally:
                generator.set_state(state)
        if self.index_key is not None:
            batch[self.index_key] = torch.as_tensor(indices, dtype=torch.long)
        return batch

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
        BatchFetchDataset(dataset, seed=seed),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=passthrough_collate,
    )

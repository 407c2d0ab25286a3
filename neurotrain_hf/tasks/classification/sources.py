"""Classification dataset builders: digits (embedded), MNIST, CIFAR-10/100, image folders, ImageNet folders.

Local originals are read from ``[dataset] root`` in their official layouts (MNIST IDX files, CIFAR
python pickles, ``imagefolder`` trees); otherwise the Hub id (or ``hub_id``) goes to ``load_dataset``.
Images are HWC: uint8 arrays or PIL images; digits are float32 in [0, 1].
"""

from __future__ import annotations

import gzip
import logging
import pickle
from pathlib import Path

import datasets
import numpy as np

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource, register_dataset
from ...data.splits import load_hub, normalize_splits
from ...errors import DataError

MNIST_STATS = ((0.1307,), (0.3081,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm", ".jfif"}
logger = logging.getLogger(__name__)


def array_split(images: np.ndarray, labels: np.ndarray, names: list[str]) -> datasets.Dataset:
    """An in-memory split with a fixed-shape image column (zero-copy batch reads)."""
    dtype = "uint8" if images.dtype == np.uint8 else "float32"
    features = datasets.Features(
        {
            "image": datasets.Array3D(shape=images.shape[1:], dtype=dtype),
            "label": datasets.ClassLabel(names=names),
        }
    )
    return datasets.Dataset.from_dict({"image": images, "label": labels.astype(np.int64)}, features=features)


@register_dataset("digits")
def digits(cfg: DatasetConfig) -> DatasetSource:
    """scikit-learn's 8x8 handwritten digits (1,797 real samples, shipped with scikit-learn)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., None]
    split = array_split(images, bunch.target, [str(i) for i in range(10)])
    return DatasetSource(datasets.DatasetDict({"train": split}), mean=None, std=None)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's big-endian format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not a uint8 IDX file (bad magic {data[:4].hex()})")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: IDX header says {tuple(dims)} but holds {body.size} bytes")
    return body.reshape(tuple(dims))


def _find_file(root: Path, stem: str) -> Path:
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"{root}: MNIST file {stem}[.gz] not found (looked in MNIST/raw, raw and the folder)")


@register_dataset("mnist")
def mnist(cfg: DatasetConfig) -> DatasetSource:
    """MNIST from its original IDX files under ``root`` or from the Hub (``ylecun/mnist``)."""
    if cfg.root is None:
        return DatasetSource(load_hub(cfg, "ylecun/mnist"), *MNIST_STATS)
    root, splits = Path(cfg.root), {}
    names = [str(i) for i in range(10)]
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find_file(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find_file(root, f"{prefix}-labels-idx1-ubyte"))
        if len(images) != len(labels):
            raise DataError(f"{root}: {prefix} has {len(images)} images but {len(labels)} labels")
        splits[split] = array_split(images[..., None], labels, names)
    return DatasetSource(datasets.DatasetDict(splits), *MNIST_STATS)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: CIFAR batch file not found")
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # noqa: S301 - the official CIFAR format is a pickle


def _cifar_split(files: list[Path], label_key: str, names: list[str]) -> datasets.Dataset:
    parts = [_unpickle(p) for p in files]
    data = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts])
    labels = np.concatenate([np.asarray(p[label_key]) for p in parts])
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return array_split(np.ascontiguousarray(images), labels, names)


def _cifar_root(root: Path, folder: str) -> Path:
    return root / folder if (root / folder).is_dir() else root


@register_dataset("cifar10")
def cifar10(cfg: DatasetConfig) -> DatasetSource:
    """CIFAR-10 from ``cifar-10-batches-py`` pickles under ``root`` or from the Hub (``uoft-cs/cifar10``)."""
    if cfg.root is None:
        return DatasetSource(load_hub(cfg, "uoft-cs/cifar10"), *CIFAR10_STATS, image_column="img")
    base = _cifar_root(Path(cfg.root), "cifar-10-batches-py")
    names = _unpickle(base / "batches.meta")["label_names"]
    train = _cifar_split([base / f"data_batch_{i}" for i in range(1, 6)], "labels", names)
    test = _cifar_split([base / "test_batch"], "labels", names)
    return DatasetSource(datasets.DatasetDict({"train": train, "test": test}), *CIFAR10_STATS)


@register_dataset("cifar100")
def cifar100(cfg: DatasetConfig) -> DatasetSource:
    """CIFAR-100 (fine labels) from ``cifar-100-python`` under ``root`` or from the Hub (``uoft-cs/cifar100``)."""
    if cfg.root is None:
        source = load_hub(cfg, "uoft-cs/cifar100")
        return DatasetSource(source, *CIFAR100_STATS, image_column="img", label_column="fine_label")
    base = _cifar_root(Path(cfg.root), "cifar-100-python")
    names = _unpickle(base / "meta")["fine_label_names"]
    train = _cifar_split([base / "train"], "fine_labels", names)
    test = _cifar_split([base / "test"], "fine_labels", names)
    return DatasetSource(datasets.DatasetDict({"train": train, "test": test}), *CIFAR100_STATS)


def _imagefolder(cfg: DatasetConfig, stats) -> DatasetSource:
    if cfg.root is None:
        return DatasetSource(load_hub(cfg, None), *stats)
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"[dataset] root {str(root)!r}: folder not found")
    _warn_empty_class_folders(root)
    try:
        loaded = datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=cfg.cache_dir)
    except (FileNotFoundError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"[dataset] root {str(root)!r}: no image files found ({first})") from None
    return DatasetSource(normalize_splits(loaded, str(root)), *stats)


def _warn_empty_class_folders(root: Path) -> None:
    """Class folders without images have no samples (and so no class): say so instead of failing later."""
    for folder in sorted(p for p in root.rglob("*") if p.is_dir() and not p.name.startswith(".")):
        entries = list(folder.iterdir())
        if any(e.is_dir() for e in entries):
            continue
        if not any(e.suffix.lower() in IMAGE_SUFFIXES for e in entries if e.is_file()):
            logger.warning("[dataset] %s: no images in this folder; it is not a class", folder)


@register_dataset("imagefolder")
def imagefolder(cfg: DatasetConfig) -> DatasetSource:
    """Any ``imagefolder`` tree: ``root/<split>/<class>/<image>`` (labels from folder names)."""
    return _imagefolder(cfg, (None, None))


@register_dataset("imagenet")
def imagenet(cfg: DatasetConfig) -> DatasetSource:
    """ImageNet-style folders ``root/{train,val}/<wnid>/<image>``; class index = sorted WNID order."""
    return _imagefolder(cfg, IMAGENET_STATS)


@register_dataset("hub")
def hub(cfg: DatasetConfig) -> DatasetSource:
    """Any Hub (or local ``save_to_disk``/parquet) dataset given by ``hub_id``."""
    return DatasetSource(load_hub(cfg, None))

import gzip
import pickle
import struct

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from neurotrain_hf.data import (
    BatchFetchDataset,
    get_dataset,
    get_test_dataset,
    get_train_dataset,
    get_train_valid_test_dataloader,
    get_valid_dataset,
    prepare_data,
    random_sample,
)
from neurotrain_hf.data.transforms import ImageTransform, image_processor
from neurotrain_hf.errors import DataError, RegistryError

from ..conftest import make_config


def load_splits(cfg):
    data = prepare_data(cfg)
    return data.splits, data.info


def raw(split):
    """The split without its transform (columns as stored)."""
    return split.with_format(None)


def test_digits_splits_are_stratified_and_disjoint(tmp_path):
    cfg = make_config(tmp_path, dataset={"max_samples": None})
    dsd, info = load_splits(cfg)
    sizes = {k: len(v) for k, v in dsd.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 360 and sizes["valid"] == pytest.approx(144, abs=1)
    assert info.num_labels == 10 and info.channels == 1 and info.label_names[3] == "3"
    counts = np.bincount(raw(dsd["test"])["label"], minlength=10)
    assert counts.min() >= 34  # stratified: about 36 per class
    assert abs(info.mean[0] - float(np.mean(dsd["train"].with_format("numpy")["image"]))) < 1e-5


def test_get_dataset_applies_transforms_and_split_getters(tmp_path):
    cfg = make_config(tmp_path)
    dsd = get_dataset(cfg)
    sample = dsd["train"][0]
    assert sample["pixel_values"].shape == (1, 1, 8, 8) or sample["pixel_values"].shape == (1, 8, 8)
    batch = dsd["test"][:5]
    assert batch["pixel_values"].shape == (5, 1, 8, 8) and batch["labels"].dtype == torch.long
    assert abs(float(dsd["train"][:256]["pixel_values"].mean())) < 0.05  # normalized
    assert len(get_train_dataset(cfg)) == len(dsd["train"])
    assert len(get_valid_dataset(cfg)) == len(dsd["valid"])
    assert len(get_test_dataset(cfg)) == len(dsd["test"])


def test_batch_fetch_zero_copy_equals_datasets_formatting(tmp_path):
    cfg = make_config(tmp_path)
    split = get_dataset(cfg)["train"]
    fast = BatchFetchDataset(split)
    assert fast.zero_copy  # Array3D + ClassLabel through Arrow views, across the split's indices mapping
    idx = [5, 0, 17, 3, 3]
    ours = fast.__getitems__(idx)
    reference = split[idx]  # datasets' own formatting + set_transform
    torch.testing.assert_close(ours["pixel_values"], reference["pixel_values"])
    assert ours["labels"].tolist() == reference["labels"].tolist()


def test_batch_fetch_multi_chunk_gather():
    feats = datasets.Features(
        {"image": datasets.Array3D((2, 2, 1), "float32"), "label": datasets.Value("int64")}
    )
    parts = [
        datasets.Dataset.from_dict(
            {"image": np.full((n, 2, 2, 1), i, np.float32), "label": np.arange(n) + 10 * i}, features=feats
        )
        for i, n in enumerate((3, 4, 5))
    ]
    ds = datasets.concatenate_datasets(parts)
    fetch = BatchFetchDataset(ds)
    assert fetch.zero_copy
    batch = fetch.fetch([11, 0, 4, 7])
    assert batch["label"].tolist() == [24, 0, 11, 20]
    assert batch["image"][:, 0, 0, 0].tolist() == [2, 0, 1, 2]


def test_random_sample_and_dataloaders(tmp_path):
    cfg = make_config(tmp_path)
    train = get_train_dataset(cfg)
    sub = random_sample(train, 10, seed=0)
    assert len(sub) == 10 and len(set(sub[:]["labels"].tolist())) > 1
    assert len(random_sample(train, 10_000)) == len(train)
    train_dl, valid_dl, test_dl = get_train_valid_test_dataloader(cfg)
    batch = next(iter(train_dl))
    assert batch["pixel_values"].shape == (32, 1, 8, 8)
    assert sum(len(b["labels"]) for b in test_dl) == len(get_test_dataset(cfg))


def test_augmentations_shapes_and_randomness():
    from neurotrain_hf.tasks.classification.config import ClassificationAugmentation as AugmentationConfig

    aug = AugmentationConfig(
        resize=12, random_crop=10, crop_padding=1, horizontal_flip=1.0, rotation=15, color_jitter=0.3
    )
    images = [np.random.default_rng(i).integers(0, 255, (9 + i, 11, 3), dtype=np.uint8) for i in range(4)]
    processor = image_processor(aug, 3, (0.5,) * 3, (0.5,) * 3)
    train = ImageTransform(processor, aug, train=True)
    evaluate = ImageTransform(processor, aug, train=False)
    torch.manual_seed(0)
    a = train({"image": images, "label": [0, 1, 2, 3]})
    b = train({"image": images, "label": [0, 1, 2, 3]})
    assert a["pixel_values"].shape == (4, 3, 10, 10) and not torch.equal(a["pixel_values"], b["pixel_values"])
    e1, e2 = evaluate({"image": images}), evaluate({"image": images})
    torch.testing.assert_close(e1["pixel_values"], e2["pixel_values"])  # deterministic at eval
    flip_aug = type(aug)(horizontal_flip=1.0, normalize=False)
    flip = ImageTransform(image_processor(flip_aug, 1, (0,), (1,)), flip_aug, train=True)
    img = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    out = flip({"image": [img]})["pixel_values"][0, 0]
    torch.testing.assert_close(out, torch.from_numpy(img[:, ::-1, 0].copy()).float() / 255)


def test_mixed_sizes_without_resize_fail_clearly():
    from neurotrain_hf.tasks.classification.config import ClassificationAugmentation as AugmentationConfig

    t = ImageTransform(image_processor(AugmentationConfig(), 1, (0.5,), (0.5,)), AugmentationConfig())
    with pytest.raises(ValueError, match="set \\[augmentation\\] resize"):
        t({"image": [np.zeros((4, 4), np.uint8), np.zeros((5, 5), np.uint8)]})


# --- original on-disk layouts -------------------------------------------------------------------
def write_idx(path, array, gz=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_mnist_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_x, test_x = rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 256, (10, 28, 28))
    write_idx(raw / "train-images-idx3-ubyte", train_x)
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(30) % 10)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", test_x, gz=True)  # .gz beside the plain files works too
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(10), gz=True)
    cfg = make_config(
        tmp_path, dataset={"name": "mnist", "root": str(tmp_path), "max_samples": None, "valid_ratio": 0.2}
    )
    dsd, info = load_splits(cfg)
    assert len(dsd["test"]) == 10 and len(dsd["train"]) + len(dsd["valid"]) == 30
    assert info.channels == 1 and info.mean == (0.1307,)
    first = dsd["test"].with_format("numpy")[0]
    np.testing.assert_array_equal(first["image"][..., 0], test_x[0])
    (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x09\x01")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: not a uint8 IDX file"):
        load_splits(cfg)


def dump(obj, path):
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar(root, n_per_batch=4, hundred=False):
    rng = np.random.default_rng(0)
    if hundred:
        base = root / "cifar-100-python"
        base.mkdir()
        for name, n in (("train", 8), ("test", 4)):
            d = {
                "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                "fine_labels": list(range(n)),
                "coarse_labels": [0] * n,
            }
            dump(d, base / name)
        dump({"fine_label_names": [f"c{i}" for i in range(100)]}, base / "meta")
        return base
    base = root / "cifar-10-batches-py"
    base.mkdir()
    for i in range(1, 6):
        dump(
            {
                "data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                "labels": [(i + j) % 10 for j in range(n_per_batch)],
            },
            base / f"data_batch_{i}",
        )
    test = {"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8), "labels": [1, 2, 3, 4]}
    dump(test, base / "test_batch")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    dump({"label_names": names}, base / "batches.meta")
    return base, test


def test_cifar10_pickles_planar_rgb(tmp_path):
    base, test = write_cifar(tmp_path)
    cfg = make_config(
        tmp_path, dataset={"name": "cifar10", "root": str(tmp_path), "max_samples": None, "valid_ratio": 0.0}
    )
    dsd, info = load_splits(cfg)
    assert len(dsd["train"]) == 20 and info.channels == 3 and info.label_names[1] == "automobile"
    img = dsd["test"].with_format("numpy")[0]["image"]
    row = test["data"][0]
    assert img.shape == (32, 32, 3)
    assert (img[0, 0, 0], img[0, 0, 1], img[0, 0, 2]) == (row[0], row[1024], row[2048])  # R, G, B planes


def test_cifar100_fine_labels(tmp_path):
    write_cifar(tmp_path, hundred=True)
    cfg = make_config(
        tmp_path, dataset={"name": "cifar100", "root": str(tmp_path), "max_samples": None, "valid_ratio": 0.0}
    )
    dsd, info = load_splits(cfg)
    assert info.num_labels == 100 and raw(dsd["test"])["label"] == [0, 1, 2, 3]


def write_imagefolder(root, splits=("train", "test"), classes=("cat", "dog"), n=3, size=(6, 5)):
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
                    folder / f"{c}_{i}.png"
                )


def test_imagefolder_and_imagenet_layout(tmp_path):
    write_imagefolder(tmp_path / "pets")
    cfg = make_config(
        tmp_path,
        dataset={
            "name": "imagefolder",
            "root": str(tmp_path / "pets"),
            "max_samples": None,
            "valid_ratio": 0.34,
        },
        augmentation={"resize": 8},
    )
    dsd = get_dataset(cfg)
    assert set(dsd) == {"train", "valid", "test"} and len(dsd["test"]) == 6
    assert dsd["train"].features["label"].names == ["cat", "dog"]
    assert dsd["test"][:2]["pixel_values"].shape == (2, 3, 8, 8)
    write_imagefolder(tmp_path / "inet", splits=("train", "val"), classes=("n02", "n01"))
    cfg = make_config(
        tmp_path,
        dataset={"name": "imagenet", "root": str(tmp_path / "inet"), "max_samples": None, "test_ratio": 0.0},
    )
    dsd, info = load_splits(cfg)
    assert info.label_names == ["n01", "n02"]  # sorted WNID order, not file order
    assert len(dsd["valid"]) == 6 and info.mean == (0.485, 0.456, 0.406)


def test_hub_loading_from_local_dataset_with_renamed_columns(tmp_path):
    images = [Image.fromarray(np.full((4, 4, 3), i * 20, np.uint8)) for i in range(8)]
    feats = datasets.Features({"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=["a", "b"])})
    ds = datasets.Dataset.from_dict({"img": images, "fine_label": [i % 2 for i in range(8)]}, features=feats)
    datasets.DatasetDict({"train": ds, "test": ds.select(range(4))}).save_to_disk(str(tmp_path / "hubcopy"))
    cfg = make_config(
        tmp_path,
        dataset={
            "name": "cifar100",
            "hub_id": str(tmp_path / "hubcopy"),
            "max_samples": None,
            "valid_ratio": 0.25,
        },
    )
    dsd = get_dataset(cfg)
    assert dsd["test"][:4]["pixel_values"].shape == (4, 3, 4, 4)
    assert dsd["train"].features["label"].names == ["a", "b"]
    bad = make_config(
        tmp_path, dataset={"name": "hub", "hub_id": str(tmp_path / "hubcopy"), "image_column": "pix"}
    )
    with pytest.raises(DataError, match="has no column 'pix'"):
        load_splits(bad)


def test_missing_folder_and_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="CIFAR batch file not found"):
        load_splits(make_config(tmp_path, dataset={"name": "cifar10", "root": str(tmp_path)}))
    with pytest.raises(RegistryError, match="did you mean 'digits'"):
        load_splits(make_config(tmp_path, dataset={"name": "digitz"}))

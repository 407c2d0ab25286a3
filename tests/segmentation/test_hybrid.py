"""HybridDataset: several sources in one run, mixed by weight, balanced or in priority order."""

import collections

import datasets
import pytest

from neurotrain_hf.data.hybrid import hybrid
from neurotrain_hf.data.registry import DATASETS, DatasetSource, register_dataset
from neurotrain_hf.runner import build
from neurotrain_hf.tasks.segmentation.config import SegmentationDataset as DatasetConfig
from neurotrain_hf.tasks.segmentation.synthetic import synthetic_split

from .test_segmentation import seg_config


def _toy(prefix: str, n: int, shared: int = 0):
    """A source of ``n`` synthetic training images whose first ``shared`` ids are common to all toys."""

    def builder(cfg: DatasetConfig) -> DatasetSource:
        split = synthetic_split("train", n, size=32)
        ids = [f"common_{i}" if i < shared else f"{prefix}_{i}" for i in range(n)]
        split = split.remove_columns("id").add_column("id", ids)
        return DatasetSource(datasets.DatasetDict({"train": split}))

    return builder


for _name, _n, _shared in (("toy_a", 24, 4), ("toy_b", 24, 4), ("toy_small", 8, 0)):
    if _name not in DATASETS.list():
        register_dataset(_name)(_toy(_name, _n, _shared))


def mix(sampling="weighted", seed=0, **sources):
    cfg = DatasetConfig(
        name="hybrid", sources=sources, sampling=sampling, sampling_seed=seed, valid_ratio=0.25
    )
    return hybrid(cfg).splits


def shares(split, n=None):
    sources = split["source"][:n] if n else split["source"]
    counts = collections.Counter(sources)
    return {k: v / len(sources) for k, v in counts.items()}


def test_weighted_mix_follows_the_weights_and_the_seed():
    splits = mix(toy_a={"weight": 3.0}, toy_b={"weight": 1.0})
    first = shares(splits["train"], 24)
    assert 0.6 <= first["toy_a"] <= 0.9  # 3:1 while both sources still have samples
    again = mix(toy_a={"weight": 3.0}, toy_b={"weight": 1.0})
    assert again["train"]["id"] == splits["train"]["id"]  # reproducible with the seed
    other = mix(seed=1, toy_a={"weight": 3.0}, toy_b={"weight": 1.0})
    assert other["train"]["id"] != splits["train"]["id"]
    assert set(splits["train"]["source"]) == {"toy_a", "toy_b"}
    seen = {i for split in splits.values() for i in split["id"]}
    assert seen == {i for s in ("toy_a", "toy_b") for i in _ids(s)}  # every sample is in some split


def _ids(name):
    return set(DATASETS.get(name)(DatasetConfig(name=name)).splits["train"]["id"])


def test_balanced_mix_gives_equal_shares_and_never_leaks_into_validation():
    splits = mix("balanced", toy_a={}, toy_small={})
    first = shares(splits["train"], 12)
    assert 0.25 <= first["toy_small"] <= 0.75
    train_rows = {(s, i) for s, i in zip(splits["train"]["source"], splits["train"]["id"])}
    valid_rows = {(s, i) for s, i in zip(splits["valid"]["source"], splits["valid"]["id"])}
    assert not train_rows & valid_rows  # each source is split before oversampling
    assert shares(splits["valid"]).keys() == {"toy_a", "toy_small"}


def test_priority_keeps_the_first_source_for_shared_ids():
    splits = mix("priority", toy_a={}, toy_b={})
    rows = list(zip(splits["train"]["source"], splits["train"]["id"]))
    common = [(s, i) for s, i in rows if i.startswith("common_")]
    assert common and all(s == "toy_a" for s, _ in common)
    assert len({i for _, i in rows}) == len(rows)  # no duplicates
    assert [s for s, _ in rows] == sorted(s for s, _ in rows)  # listed order: toy_a first


def test_bad_source_options_fail_clearly():
    from neurotrain_hf.errors import DataError

    with pytest.raises(DataError, match=r"\[dataset.sources.toy_a\] unknown keys \['wieght'\]"):
        mix(toy_a={"wieght": 2})
    with pytest.raises(DataError, match="list the datasets"):
        hybrid(DatasetConfig(name="hybrid"))


def test_hybrid_segmentation_reports_per_source_metrics(tmp_path):
    config = seg_config(
        tmp_path,
        dataset={
            "name": "hybrid",
            "sampling": "balanced",
            "sources": {"toy_a": {}, "toy_small": {}},
            "max_samples": None,
        },
        training={"num_train_epochs": 1},
        augmentation={"random_crop": 32},
    )
    _, data, trainer = build(config)
    assert data.info.sources == ["toy_a", "toy_small"]
    metrics = trainer.evaluate()
    assert {"eval_f1@toy_a", "eval_f1@toy_small", "eval_f1"} <= set(metrics)


def test_hybrid_dataset_python_api_matches_the_config():
    from neurotrain_hf import HybridDataset

    mixed = HybridDataset(
        {"toy_a": {"weight": 3.0}, "toy_b": {}}, sampling="weighted", seed=0, valid_ratio=0.25
    )
    config = mix(toy_a={"weight": 3.0}, toy_b={})
    assert mixed["train"]["id"] == config["train"]["id"] and set(mixed) == set(config)

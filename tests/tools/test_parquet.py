"""``neurotrain to-parquet``: every task's layout round-trips row for row (pixels, labels, masks, captions,
boxes, conversations) through ``[dataset] name = "parquet"`` and ``load_dataset``; shards follow
``--shard-mb``; ``--push`` uploads a folder the Hub (a local double) serves back."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from neurotrain_hf.config import build_config
from neurotrain_hf.data import prepare_data
from neurotrain_hf.data.images import open_image
from neurotrain_hf.data.parquet import source_fields
from neurotrain_hf.data.registry import DATASETS, DatasetSource
from neurotrain_hf.errors import DataError
from neurotrain_hf.tasks import get_task
from neurotrain_hf.tools.parquet import MB, estimate_bytes, summary_line, to_parquet

from ..conftest import tiny_config_dict
from ..helpers.tiny_runs import config as tiny_config


def plain(value):
    """A row value with every image (a ``{bytes, path}`` dict or PIL image) as its pixel array."""
    if isinstance(value, dict) and set(value) == {"bytes", "path"}:
        with open_image(value) as image:
            return np.asarray(image)
    if isinstance(value, Image.Image):
        return np.asarray(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def assert_same(a, b, where="row"):
    """Equal values, arrays compared element by element."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.array_equal(np.asarray(a), np.asarray(b)), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_splits(a: datasets.DatasetDict, b: datasets.DatasetDict) -> None:
    assert list(a) == list(b)
    for name in a:
        left, right = a[name].with_format(None), b[name].with_format(None)
        assert left.column_names == right.column_names and len(left) == len(right), name
        for i in range(len(left)):
            assert_same(plain(left[i]), plain(right[i]), f"{name}[{i}]")


def cfg(tmp_path: Path, data: dict, **dataset):
    """The config ``data`` with its [dataset] replaced (the cache kept under ``tmp_path``)."""
    data = json.loads(json.dumps(data))
    data["dataset"] = {"cache_dir": str(tmp_path / "cache"), **dataset}
    return build_config(data)


def export_and_read(tmp_path: Path, data: dict, shard_mb: float = 500, **dataset):
    """(original source, parquet source, result, parquet config) of the dataset ``dataset`` of ``data``."""
    original = cfg(tmp_path, data, **dataset)
    result = to_parquet(original, tmp_path / "pq", shard_mb=shard_mb)
    back = cfg(tmp_path, data, name="parquet", root=str(tmp_path / "pq"))
    get_task(original.basic.task).load_sources()
    source = DATASETS.get(original.dataset.name)(original.dataset)
    return source, DATASETS.get("parquet")(back.dataset), result, back


def noise(path: Path, size: int, seed: int, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def image_folder(root: Path, per_class: dict[str, int], size: int = 12) -> Path:
    for split, count in per_class.items():
        for i in range(count):
            noise(
                root / split / ("cat" if i % 2 else "dog") / f"{split}{i}.png", size, hash((split, i)) % 997
            )
    return root


# --- classification -------------------------------------------------------------------------------
def test_image_folder_round_trip_through_the_framework_and_load_dataset(tmp_path):
    root = image_folder(tmp_path / "folder", {"train": 16, "test": 6})
    data = tiny_config_dict(tmp_path)
    source, back, result, back_cfg = export_and_read(tmp_path, data, name="imagefolder", root=str(root))
    assert_same_splits(source.splits, back.splits)
    assert back.splits["train"].features == source.splits["train"].features  # Image(decode=False) again
    assert summary_line(result).startswith("wrote imagefolder (train 16, test 6 rows) as 2 parquet shards")
    # what the task prepares from either is the same: splits, labels, stats, pixels
    first = prepare_data(cfg(tmp_path, data, name="imagefolder", root=str(root)))
    second = prepare_data(back_cfg)
    assert first.info == second.info and first.info.label_names == ["cat", "dog"]
    assert_same_splits(first.splits, second.splits)
    # plain `datasets`: the folder and the parquet builder, split names and class names kept, images decoded
    for loaded in (
        datasets.load_dataset(str(tmp_path / "pq"), cache_dir=str(tmp_path / "c1")),
        datasets.load_dataset("parquet", data_dir=str(tmp_path / "pq"), cache_dir=str(tmp_path / "c2")),
    ):
        assert list(loaded) == ["train", "test"]
        assert loaded["train"].features["label"].names == ["cat", "dog"]
        assert isinstance(loaded["train"].features["image"], datasets.Image)
        assert_same(plain(loaded["test"][:]), plain(source.splits["test"].with_format(None)[:]))


def test_embedded_arrays_keep_their_values_and_the_source_stats(tmp_path):
    data = tiny_config_dict(tmp_path)
    source, back, _, _ = export_and_read(tmp_path, data, name="digits")
    assert back.splits["train"].features == source.splits["train"].features  # float32 Array3D, ClassLabel
    a, b = (s.splits["train"].with_format("numpy") for s in (source, back))
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
    assert (back.mean, back.std, back.image_column) == (source.mean, source.std, source.image_column)


def test_shard_count_follows_shard_mb(tmp_path):
    root = image_folder(tmp_path / "folder", {"train": 40}, size=32)  # ~3 kB of noise per image
    data = tiny_config_dict(tmp_path)
    original = cfg(tmp_path, data, name="imagefolder", root=str(root))
    limit = 0.025
    result = to_parquet(original, tmp_path / "pq", shard_mb=limit)
    source = DATASETS.get("imagefolder")(original.dataset)
    expected = math.ceil(estimate_bytes(source.splits["train"]) / (limit * MB))
    files = sorted((tmp_path / "pq" / "data").glob("train-*.parquet"))
    assert 3 <= expected == len(files) == result["splits"]["train"]["shards"]
    assert [f.name for f in files] == [f"train-{i:05d}-of-{expected:05d}.parquet" for i in range(expected)]
    assert max(f.stat().st_size for f in files) < 1.15 * limit * MB
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == 40
    back = DATASETS.get("parquet")(cfg(tmp_path, data, name="parquet", root=str(tmp_path / "pq")).dataset)
    assert_same_splits(source.splits, back.splits)  # row order kept across shards
    # a bigger limit: one shard; the earlier export is replaced, not mixed in
    assert to_parquet(original, tmp_path / "pq", shard_mb=10)["splits"]["train"]["shards"] == 1
    assert len(list((tmp_path / "pq" / "data").glob("*.parquet"))) == 1


# --- segmentation, detection, clip, vlm ------------------------------------------------------------------
def test_segmentation_image_mask_folder_round_trip(tmp_path):
    root = tmp_path / "seg"
    for split, count in (("train", 6), ("valid", 2)):
        for i in range(count):
            noise(root / split / "images" / f"s{i}.png", 16, i)
            mask = (np.random.default_rng(100 + i).random((16, 16)) > 0.5).astype(np.uint8) * 255
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / split / "masks" / f"s{i}_mask.png")
    data = tiny_config("segmentation", tmp_path)
    source, back, _, back_cfg = export_and_read(tmp_path, data, name="segmentation_folder", root=str(root))
    assert_same_splits(source.splits, back.splits)  # image and mask pixels, fov None, id, source
    first = prepare_data(cfg(tmp_path, data, name="segmentation_folder", root=str(root)))
    second = prepare_data(back_cfg)
    assert first.info == second.info
    assert_same_splits(first.splits, second.splits)


def test_detection_boxes_and_categories_round_trip(tmp_path):
    data = tiny_config("detection", tmp_path)
    source, back, _, back_cfg = export_and_read(
        tmp_path, data, name="synthetic_shapes_detection", max_samples=6
    )
    assert type(back) is type(source) and back.categories == source.categories  # DetectionSource again
    assert_same_splits(source.splits, back.splits)
    assert prepare_data(back_cfg).info.label_names == source.categories


def test_caption_folder_round_trip(tmp_path):
    root = tmp_path / "caps"
    rows = []
    for i in range(5):
        noise(root / f"img{i}.png", 20, i)
        rows.append(json.dumps({"file_name": f"img{i}.png", "captions": [f"caption {i}", f"another {i}"]}))
    (root / "metadata.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    source, back, _, _ = export_and_read(
        tmp_path, tiny_config("clip", tmp_path), name="captions_folder", root=str(root)
    )
    assert_same_splits(source.splits, back.splits)
    assert back.splits["train"][0]["captions"] == ["caption 0", "another 0"]


def test_vlm_conversations_round_trip(tmp_path):
    data = tiny_config("vlm", tmp_path)
    source, back, _, _ = export_and_read(
        tmp_path, data, name="synthetic_vqa", num_images=8, held_out_images=2
    )
    assert list(back.splits) == ["train", "valid", "test"]
    assert_same_splits(source.splits, back.splits)  # images, messages, answer types


# --- refusals ----------------------------------------------------------------------------------------
def test_one_line_refusals(tmp_path):
    data = tiny_config_dict(tmp_path)
    digits = cfg(tmp_path, data, name="digits")
    with pytest.raises(DataError, match="--shard-mb 0: must be a positive"):
        to_parquet(digits, tmp_path / "a", shard_mb=0)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="folder not empty"):
        to_parquet(digits, tmp_path / "busy")
    with pytest.raises(DataError, match="set root"):
        DATASETS.get("parquet")(cfg(tmp_path, data, name="parquet").dataset)

    @dataclasses.dataclass
    class Held(DatasetSource):
        volume: object = None

    with pytest.raises(DataError) as info:
        source_fields(Held(datasets.DatasetDict(), volume=object()), "btcv")
    assert "'volume'" in str(info.value) and "\n" not in str(info.value)


def test_plain_parquet_folders_load_as_plain_splits(tmp_path):
    """A Hub-style parquet folder not written by to-parquet (no neurotrain card key): plain splits."""
    (tmp_path / "plain" / "data").mkdir(parents=True)
    ds = datasets.Dataset.from_dict(
        {"image": [np.zeros((2, 2, 1), np.uint8).tolist()] * 3, "label": [0, 1, 0]}
    )
    ds.to_parquet(str(tmp_path / "plain" / "data" / "train-00000-of-00001.parquet"))
    back = DATASETS.get("parquet")(
        cfg(tmp_path, tiny_config_dict(tmp_path), name="parquet", root=str(tmp_path / "plain")).dataset
    )
    assert list(back.splits) == ["train"] and back.splits["train"]["label"] == [0, 1, 0]


# --- push through the Hub double -----------------------------------------------------------------------------
def test_push_uploads_a_folder_the_hub_serves_back(tmp_path):
    from ..hub_double import client_env, serve

    root = image_folder(tmp_path / "folder", {"train": 6, "test": 2})
    data = tiny_config_dict(tmp_path)
    data["dataset"] = {"name": "imagefolder", "root": str(root), "cache_dir": str(tmp_path / "cache")}
    (tmp_path / "cfg.json").write_text(json.dumps(data))
    script = f"""
        import json
        import datasets
        from neurotrain_hf.config import build_config
        from neurotrain_hf.data.registry import DATASETS
        from neurotrain_hf.tools.parquet import summary_line, to_parquet
        data = json.load(open({str(tmp_path / "cfg.json")!r}))
        result = to_parquet(build_config(data), {str(tmp_path / "pq")!r}, push="tester/shapes-parquet")
        hub = datasets.load_dataset("tester/shapes-parquet", cache_dir={str(tmp_path / "c")!r})
        data["dataset"] = {{"name": "parquet", "hub_id": "tester/shapes-parquet", "cache_dir": {str(tmp_path / "c2")!r}}}
        back = DATASETS.get("parquet")(build_config(data).dataset)
        print(json.dumps({{"line": summary_line(result), "hub": {{k: len(v) for k, v in hub.items()}},
            "names": hub["train"].features["label"].names, "back": {{k: len(v) for k, v in back.splits.items()}},
            "back_names": back.splits["train"].features["label"].names}}))
    """
    server = serve(0)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=180,
            env=client_env(server, tmp_path / "home", "hf_test_write"),
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        repo = server.store.repos["datasets/tester/shapes-parquet"]
        assert repo is not None
    finally:
        server.shutdown()
    assert out["line"].endswith("; pushed to tester/shapes-parquet")
    assert out["hub"] == out["back"] == {"train": 6, "test": 2}
    assert out["names"] == out["back_names"] == ["cat", "dog"]

"""`[dataset] streaming = true`: shard splits across processes, exact resume, learning like map-style.

Fixtures are scikit-learn digits written as PNG rows into parquet shards (the `neurotrain to-parquet`
layout) and WebDataset tars. Sample ids come from the loader's debug log (`NEUROTRAIN_STREAM_LOG`: one
line per yielded row, "epoch batch digest"). As a script (`accelerate launch tests/test_streaming.py
CONFIG...`) this file trains several configs in the same processes, one launch for every layout.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest

LOG_ENV = "NEUROTRAIN_STREAM_LOG"
HOLDOUT = 100  # rows of the valid and of the test split


def digit_rows(n: int) -> list[tuple[bytes, int]]:
    """``n`` distinct digits as (PNG bytes, label): a row's content is its id."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch, seen, rows = load_digits(), set(), []
    for image, label in zip(bunch.images, bunch.target):
        buffer = io.BytesIO()
        Image.fromarray((image * 15).astype(np.uint8)).save(buffer, format="PNG")
        data = buffer.getvalue()
        if data not in seen:
            seen.add(data)
            rows.append((data, int(label)))
        if len(rows) == n:
            return rows
    raise AssertionError(f"digits has fewer than {n} distinct images")


def write_parquet(root: Path, sizes: list[int]) -> Path:
    """``data/<split>-0000K-of-0000N.parquet`` shards of ``sizes`` train rows, one valid and one test shard."""
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )
    rows = digit_rows(sum(sizes) + 2 * HOLDOUT)
    parts = [("train", k, len(sizes), n) for k, n in enumerate(sizes)] + [
        ("valid", 0, 1, HOLDOUT),
        ("test", 0, 1, HOLDOUT),
    ]
    (root / "data").mkdir(parents=True)
    start = 0
    for split, k, count, n in parts:
        table = [{"image": {"bytes": b, "path": None}, "label": y} for b, y in rows[start : start + n]]
        start += n
        datasets.Dataset.from_list(table, features=features).to_parquet(
            str(root / "data" / f"{split}-{k:05d}-of-{count:05d}.parquet")
        )
    return root


def write_tars(root: Path, sizes: list[int]) -> Path:
    """``<split>-NNN.tar`` WebDataset shards: ``<key>.png`` + ``<key>.cls`` per row."""
    rows = digit_rows(sum(sizes) + 2 * HOLDOUT)
    parts = [("train", k, n) for k, n in enumerate(sizes)] + [("valid", 0, HOLDOUT), ("test", 0, HOLDOUT)]
    root.mkdir(parents=True)
    start = 0
    for split, k, n in parts:
        with tarfile.open(root / f"{split}-{k:03d}.tar", "w") as tar:
            for key, (data, label) in enumerate(rows[start : start + n], start):
                for ext, payload in (("png", data), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"{key:06d}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        start += n
    return root


def stream_config(tmp: Path, name: str, root: Path, run_id: str, **training) -> dict:
    from .conftest import tiny_config_dict

    data = tiny_config_dict(
        tmp,
        basic={"run_id": run_id},
        dataset={"name": name, "root": str(root), "streaming": True, "shuffle_buffer": 64},
        training={"batch_size": 16, "eval_strategy": "no", "save_strategy": "no", "metrics": [], **training},
        testing={"run_after_training": False},
    )
    del data["dataset"]["max_samples"]  # streaming reads every row of the train shards
    return data


def stop_at(step: int):
    """A callback that ends training after ``step`` (the checkpoint of that step written first)."""
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                control.should_training_stop = True

    return StopAt()


def read_log(folder: Path) -> dict[int, dict[int, list[tuple[int, str]]]]:
    """{rank: {epoch: [(batch, sample id), ...]}} from the loader's debug log."""
    out: dict[int, dict[int, list[tuple[int, str]]]] = {}
    for file in sorted(folder.glob("rank*.log")):
        per = out.setdefault(int(file.stem[4:]), {})
        for line in file.read_text().splitlines():
            epoch, batch, digest = line.split()
            per.setdefault(int(epoch), []).append((int(batch), digest))
    return out


# --- two processes: every layout in one launch ------------------------------------------------------
STOP_2 = 11  # the 2-process run stopped here: epoch 1, batch 3 (8 batches per epoch)
LAYOUTS = {  # name: (dataset, train shard sizes, rows left out per epoch on 2 processes)
    "parquet_4_shards": ("parquet", [60, 60, 60, 60], 0),  # whole shards per process
    "parquet_3_shards": ("parquet", [80, 80, 80], 0),  # 3 % 2 != 0: every 2nd row per process
    "tar_2_shards": ("webdataset", [48, 48], 0),
    "tar_1_shard": ("webdataset", [61], 1),  # a process would get no shard; 61 rows: one left out
}


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    from .conftest import write_toml
    from .helpers.launch import accelerate_launch

    tmp = tmp_path_factory.mktemp("streaming2")
    configs = []
    for run_id, (name, sizes, _) in LAYOUTS.items():
        writer = write_parquet if name == "parquet" else write_tars
        root = writer(tmp / "data" / run_id, sizes)
        data = stream_config(tmp, name, root, run_id, num_train_epochs=2)
        configs.append(str(write_toml(tmp / f"{run_id}.toml", data)))
    root = tmp / "data" / "parquet_3_shards"  # stopped mid-epoch on 2 processes, then resumed
    stopped = stream_config(tmp, "parquet", root, "resumed", num_train_epochs=2, save_strategy="steps")
    stopped["training"]["save_steps"] = STOP_2
    resumed = {**stopped, "training": {**stopped["training"], "resume_from_checkpoint": "last"}}
    configs.append(f"{write_toml(tmp / 'stopped.toml', stopped)}@{STOP_2}")
    configs.append(str(write_toml(tmp / "resumed.toml", resumed)))
    proc = accelerate_launch(2, __file__, *configs, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp


@pytest.mark.slow
@pytest.mark.parametrize("run_id", list(LAYOUTS))
def test_processes_get_disjoint_parts_covering_every_row_once_per_epoch(two_process_runs, run_id):
    name, sizes, dropped = LAYOUTS[run_id]
    logs = read_log(two_process_runs / f"{run_id}.toml.log")
    assert sorted(logs) == [0, 1]
    report = json.loads((two_process_runs / "runs" / "classification" / run_id / "report.json").read_text())
    expected = {"rows": sum(sizes), "shards": len(sizes), "dropped_per_epoch": dropped}
    assert {k: report["streaming"][k] for k in expected} == expected
    orders = []
    for epoch in (0, 1):
        parts = [[d for _, d in logs[rank][epoch]] for rank in (0, 1)]
        assert len(parts[0]) == len(parts[1]) == report["streaming"]["rows_per_process"]  # same steps
        counts = Counter(parts[0] + parts[1])
        assert max(counts.values()) == 1  # disjoint, and no row twice within a process
        assert len(counts) == sum(sizes) - dropped  # complete (but the counted, logged remainder)
        orders.append(parts[0])
    assert orders[0] != orders[1]  # each epoch is shuffled anew
    assert report["global_step"] == 2 * -(-report["streaming"]["rows_per_process"] // 16)


@pytest.mark.slow
def test_two_processes_stopped_mid_epoch_resume_to_every_row_once_and_the_same_weights(two_process_runs):
    """parquet_3_shards (every 2nd row per process) stopped after step 11 (epoch 1, batch 3) and resumed:
    per process, the rows of epoch 1 before the stop and after the resume are the uninterrupted run's."""
    whole = read_log(two_process_runs / "parquet_3_shards.toml.log")
    first, second = (
        read_log(two_process_runs / "stopped.toml.log"),
        read_log(two_process_runs / "resumed.toml.log"),
    )
    per_epoch = -(-120 // 16)  # 240 rows on 2 processes: 120 each, 8 batches
    done = STOP_2 - per_epoch
    seen = []
    for rank in (0, 1):
        assert sorted(second[rank]) == [1]  # the resumed run starts in the epoch it was stopped in
        before = [d for b, d in first[rank][1] if b < done]
        after = [d for _, d in second[rank][1]]
        assert before + after == [d for _, d in whole[rank][1]]  # every row once, in the same order
        seen += before + after
    assert len(set(seen)) == len(seen) == 240  # disjoint across processes and complete
    runs = two_process_runs / "runs" / "classification"
    a, b = weights(runs / "parquet_3_shards"), weights(runs / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key].float() - b[key].float()).abs().max().item() <= 1e-6, key


# --- one process: interrupted and resumed, and against map-style -------------------------------------
ROWS, EPOCHS, STOP = [200, 200, 200, 200], 6, 70  # 50 batches of 16 per epoch: step 70 is mid second epoch
PER_EPOCH = sum(ROWS) // 16


@pytest.fixture(scope="module")
def one_process_runs(tmp_path_factory):
    from neurotrain_hf.config import build_config
    from neurotrain_hf.runner import run

    tmp = tmp_path_factory.mktemp("streaming1")
    root = write_parquet(tmp / "shards", ROWS)
    training = {
        "num_train_epochs": EPOCHS,
        "learning_rate": 0.01,
        "plots": False,
        "save_strategy": "steps",
        "save_steps": STOP,
        "metrics": ["accuracy"],
    }
    reports = {}
    for run_id, extra, callbacks in (
        ("whole", {}, None),
        ("stopped", {}, [stop_at(STOP)]),
        ("stopped", {"resume_from_checkpoint": "last"}, None),
    ):
        data = stream_config(tmp, "parquet", root, run_id, **training, **extra)
        data["testing"] = {"run_after_training": True}
        os.environ[LOG_ENV] = str(tmp / f"{run_id}-{len(reports)}.log")
        try:
            reports[f"{run_id}-{len(reports)}"] = run(build_config(data, source="t.toml"), callbacks)
        finally:
            del os.environ[LOG_ENV]
    data = stream_config(tmp, "parquet", root, "map_style", **training)
    data["dataset"]["streaming"] = False
    data["testing"] = {"run_after_training": True}
    reports["map_style"] = run(build_config(data, source="t.toml"))
    return tmp, reports


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_resumed_run_sees_each_row_of_the_epoch_once_and_ends_with_the_same_weights(one_process_runs):
    tmp, reports = one_process_runs
    whole = read_log(tmp / "whole-0.log")[0]
    first, second = read_log(tmp / "stopped-1.log")[0], read_log(tmp / "stopped-2.log")[0]
    assert reports["stopped-2"]["global_step"] == reports["whole-0"]["global_step"] == EPOCHS * PER_EPOCH
    assert reports["stopped-1"]["global_step"] == STOP
    done = STOP - PER_EPOCH  # batches of the second epoch trained before the checkpoint
    before = [d for b, d in first[1] if b < done]
    after = [d for _, d in second[1]]
    assert 0 not in second  # the resumed run starts in the epoch it was stopped in
    assert Counter(before + after) == Counter(d for _, d in whole[1])  # every row once in that epoch
    assert before + after == [d for _, d in whole[1]]  # in the uninterrupted run's order
    a, b = weights(Path(reports["whole-0"]["run_dir"])), weights(Path(reports["stopped-2"]["run_dir"]))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key].float() - b[key].float()).abs().max().item() <= 1e-6, key


def test_streaming_learns_like_map_style(one_process_runs):
    _, reports = one_process_runs
    streamed, mapped = reports["whole-0"]["test"]["accuracy"], reports["map_style"]["test"]["accuracy"]
    assert reports["whole-0"]["streaming"]["rows"] == sum(ROWS)
    assert mapped >= 0.75 and streamed >= 0.75 and abs(streamed - mapped) <= 0.1, (streamed, mapped)


# --- cheap checks -----------------------------------------------------------------------------------
def test_split_plan_keeps_processes_equal_and_counts_the_rest():
    from neurotrain_hf.data.streaming import plan_split

    assert plan_split([60, 60, 60, 60], 2).__dict__ == {"strategy": "shards", "samples": 120, "dropped": 0}
    assert plan_split([80, 80, 80], 2).__dict__ == {"strategy": "examples", "samples": 120, "dropped": 0}
    assert plan_split([61], 2).__dict__ == {"strategy": "examples", "samples": 30, "dropped": 1}
    # whole shards of unequal size would leave out too much: rows are dealt out instead
    assert plan_split([100, 10], 2).__dict__ == {"strategy": "examples", "samples": 55, "dropped": 0}


def test_corrupt_shard_is_one_line_naming_it(tmp_path):
    from neurotrain_hf.config.sections import DatasetConfig
    from neurotrain_hf.data.shards import train_shards
    from neurotrain_hf.errors import DataError

    root = write_parquet(tmp_path / "shards", [20, 20])
    bad = root / "data" / "train-00001-of-00002.parquet"
    bad.write_bytes(bad.read_bytes()[:-100])  # a truncated upload: the footer is gone
    with pytest.raises(DataError) as info:
        train_shards(DatasetConfig(name="parquet", root=str(root), streaming=True))
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_an_unreadable_image_in_a_tar_is_one_line_naming_it(tmp_path):
    """A truncated PNG among upper-case ``.PNG`` members of mixed modes and sizes, as users' tars come."""
    from PIL import Image

    from neurotrain_hf.config import build_config
    from neurotrain_hf.errors import NeuroTrainError
    from neurotrain_hf.runner import build

    root = write_tars(tmp_path / "tars", [40])
    train = root / "train-000.tar"
    with tarfile.open(train) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(train, "w") as tar:
        for i, (name, payload) in enumerate(members):
            if name.endswith(".png"):
                image = Image.open(io.BytesIO(payload)).convert(["L", "RGB", "RGBA"][i % 3])
                buffer = io.BytesIO()
                image.resize((8 + 8 * (i % 2), 8)).save(buffer, format="PNG")
                payload = buffer.getvalue()[: 20 if name == "000003.png" else None]
                name = name[:-4] + ".PNG"
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    data = stream_config(tmp_path, "webdataset", root, "bad_image")
    data["augmentation"] = {"resize": 8}
    with pytest.raises(NeuroTrainError) as info:
        build(build_config(data))
    message = str(info.value)
    assert "000003.PNG" in message and "cannot read this image" in message and "\n" not in message


def test_streaming_refuses_a_source_without_valid_and_test_splits(tmp_path):
    from neurotrain_hf.config.sections import DatasetConfig
    from neurotrain_hf.data.shards import load_splits
    from neurotrain_hf.errors import DataError

    root = write_tars(tmp_path / "tars", [20])
    for split in ("valid", "test"):
        (root / f"{split}-000.tar").unlink()
    with pytest.raises(DataError, match="own valid and test splits"):
        load_splits(DatasetConfig(name="webdataset", root=str(root), streaming=True))
    loaded = load_splits(
        DatasetConfig(name="webdataset", root=str(root), streaming=True, valid_ratio=0, test_ratio=0)
    )
    assert loaded["train"].column_names == ["image", "label"] and len(loaded["train"]) == 20


if __name__ == "__main__":  # accelerate launch tests/test_streaming.py CONFIG...: each config in turn
    from neurotrain_hf.config import load_config
    from neurotrain_hf.runner import run, shutdown_distributed

    for item in sys.argv[1:]:  # CONFIG, or CONFIG@STEP: stop after that step
        path, _, stop = item.partition("@")
        os.environ[LOG_ENV] = f"{path}.log"
        run(load_config(path), [stop_at(int(stop))] if stop else None)
    shutdown_distributed()

"""Task-owned configuration: each task's ``[dataset]``, ``[augmentation]`` and ``[training]`` classes, keys
another task reads refused in one line (exit 2, from ``neurotrain check`` and from training), metric and
loss names from one mechanism (``neurotrain list metrics --task``), keys older files set in ``[training]``
read into their new place."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from neurotrain_hf.config import build_config, load_config, read_config_file
from neurotrain_hf.config.sections import TASK_SECTIONS, AugmentationConfig, DatasetConfig
from neurotrain_hf.errors import ConfigError
from neurotrain_hf.tasks import get_task, list_tasks

from .conftest import OFFLINE, RECIPES, ROOT, write_toml

BUILT_IN = ("classification", "clip", "detection", "segmentation")


def neurotrain(*args: str) -> subprocess.CompletedProcess:
    """``neurotrain ARGS`` in this process (``main`` is the console script's function)."""
    import contextlib
    import io

    from neurotrain_hf.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize(
    ("config", "section", "key", "value", "task", "readers"),
    [
        (
            "synthetic_shapes_fasterrcnn.toml",
            "augmentation",
            "elastic",
            20,
            "detection",
            "classification, clip, segmentation",
        ),
        ("digits_cnn.toml", "dataset", "spacing", [1.0, 1.0, 1.0], "classification", "segmentation"),
        ("clip_synthetic.toml", "training", "deep_supervision", True, "clip", "segmentation"),
        ("synthetic_vessels.toml", "dataset", "caption_column", "text", "segmentation", "clip"),
    ],
)
def test_a_key_the_task_does_not_read_is_one_line_exit_2(
    tmp_path, config, section, key, value, task, readers
):
    data = read_config_file(RECIPES / "configs" / config)
    data.setdefault(section, {})[key] = value
    data["basic"]["output_dir"] = str(tmp_path / "runs")
    path = write_toml(tmp_path / config, data)
    if task == "detection":  # once as a user runs it: a fresh process, no traceback
        proc = subprocess.run(
            [sys.executable, "-m", "neurotrain_hf.cli", "train", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, **OFFLINE},
            cwd=ROOT,
            timeout=300,
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert (
            proc.stderr.strip()
            .splitlines()[-1]
            .startswith(f"error: {path}: [{section}] {key}: the {task} task")
        )
    for command in (["check", str(path)],):  # training: the subprocess above (nothing may start in here)
        proc = neurotrain(*command)
        assert proc.returncode == 2, command
        line = proc.stderr.strip().splitlines()[-1]
        assert "Traceback" not in proc.stderr
        assert line.startswith(f"error: {path}: [{section}] {key}: the {task} task does not read this key")
        assert f"(read by {readers})" in line and "nearest valid key: '" in line
        assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_every_shipped_config_checks_unchanged():
    """The configs of the landed versions are the compatibility test (detection's [training] image_size
    included: it is read into [augmentation])."""
    for path in sorted((RECIPES / "configs").glob("*.toml")):
        proc = neurotrain("check", str(path))
        assert proc.returncode == 0 and proc.stdout.startswith(f"{path}: ok"), proc.stderr


def test_moved_detection_keys_are_read_into_augmentation(tmp_path):
    data = read_config_file(RECIPES / "configs" / "synthetic_shapes_fasterrcnn.toml")
    assert data["training"]["image_size"] == 96 and "image_size" not in data.get("augmentation", {})
    config = build_config(data, source="old.toml")
    assert config.augmentation.image_size == 96 and not hasattr(config.training, "image_size")
    assert (
        config.to_dict()["augmentation"]["image_size"] == 96
        and "image_size" not in config.to_dict()["training"]
    )
    data["augmentation"]["image_size"] = 64
    with pytest.raises(
        ConfigError, match=r"\[training\] image_size and \[augmentation\] image_size are both set"
    ):
        build_config(data, source="old.toml")
    override = load_config(RECIPES / "configs" / "coco_detr.toml", ["--training.crop_probability", "0.5"])
    assert override.augmentation.crop_probability == 0.5


def test_task_sections_are_the_tasks_own_classes():
    for task in BUILT_IN:
        spec = get_task(task)
        assert issubclass(spec.section_class("dataset"), DatasetConfig)
        assert issubclass(spec.section_class("augmentation"), AugmentationConfig)
    shared = {f.name for f in dataclasses.fields(DatasetConfig)}
    assert shared == {
        "name",
        "root",
        "hub_id",
        "revision",
        "valid_ratio",
        "test_ratio",
        "max_samples",
        "cache_dir",
        "skip_bad_samples",
        "streaming",
        "shuffle_buffer",
    }
    assert not dataclasses.fields(AugmentationConfig)  # nothing every task reads
    detection = {f.name for f in dataclasses.fields(get_task("detection").section_class("augmentation"))}
    assert detection == {
        "horizontal_flip",
        "vertical_flip",
        "color_jitter",
        "image_size",
        "crop_probability",
        "min_visible",
    }
    assert "loss" not in {
        f.name for f in dataclasses.fields(get_task("detection").config_class())
    }  # its own loss


@pytest.mark.parametrize("task", BUILT_IN)
@pytest.mark.parametrize("section", TASK_SECTIONS)
def test_every_task_field_has_help(task, section):
    cls = get_task(task).section_class(section)
    from transformers import TrainingArguments

    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    own = [f for f in dataclasses.fields(cls) if f.init and f.name not in inherited]
    missing = [f.name for f in own if not f.metadata.get("help")]
    assert own and not missing, f"{cls.__name__}: {missing}"


def test_list_metrics_per_task_is_what_the_config_accepts(tmp_path):
    proc = neurotrain("list", "metrics", "--task", "segmentation")
    names = proc.stdout.split()
    assert proc.returncode == 0 and {"mcc", "mean_hd95", "sensitivity", "best_f1_threshold"} <= set(names)
    assert "map" not in names and "accuracy" in names
    detection = neurotrain("list", "metrics", "--task", "detection").stdout.split()
    assert {"segm_map", "map_50", "f1_50"} <= set(detection) and "mcc" not in detection
    clip = neurotrain("list", "metrics", "--task", "clip").stdout.split()
    assert {"clip_retrieval", "zero_shot_accuracy", "mean_recall"} <= set(clip)
    assert neurotrain("list", "losses", "--task", "clip").stdout.split() == ["infonce", "siglip"]
    assert "infonce" not in neurotrain("list", "losses", "--task", "segmentation").stdout.split()
    # every listed segmentation metric is accepted, as metrics and as metric_for_best_model
    selectable = [n for n in names if "*" not in n]
    config = load_config(
        RECIPES / "configs" / "synthetic_vessels.toml",
        ["--training.metrics", str(selectable), "--training.metric_for_best_model", "mcc"],
    )
    assert config.training.metrics == selectable
    load_config(RECIPES / "configs" / "synthetic_3d.toml", ["--training.metric_for_best_model", "dice_liver"])


@pytest.mark.parametrize(
    ("overrides", "message", "listed"),
    [
        (
            ["--training.metrics", '["mcc", "map"]'],
            "[training] metrics: 'map' is not a segmentation metric",
            "mcc",
        ),
        (["--training.metric_for_best_model", "mean_recall"], "metric_for_best_model = 'mean_recall'", "mcc"),
        (["--training.loss", "infonce"], "[training] loss: 'infonce' is not a segmentation loss", "cldice"),
    ],
)
def test_unknown_metric_or_loss_is_one_line_listing_the_valid_ones(overrides, message, listed):
    with pytest.raises(ConfigError) as err:
        load_config(RECIPES / "configs" / "synthetic_vessels.toml", overrides)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert listed in text and ("valid:" in text or "choose one of" in text)


def test_built_in_tasks_come_from_entry_points():
    from importlib.metadata import entry_points

    points = {p.name: p.value for p in entry_points(group="neurotrain_hf.tasks")}
    assert {t: points[t] for t in BUILT_IN} == {t: f"neurotrain_hf.tasks.{t}:SPEC" for t in BUILT_IN}
    assert set(BUILT_IN) <= set(list_tasks())


def test_a_distance_as_best_metric_is_minimised():
    """HD95 is a distance: picking the best checkpoint by it must minimise it (transformers maximises any
    name not ending in "loss"), unless the file says otherwise."""
    config = RECIPES / "configs" / "synthetic_3d.toml"
    assert load_config(config).training.greater_is_better is True  # mean_dice
    assert (
        load_config(config, ["--training.metric_for_best_model", "hd95_liver"]).training.greater_is_better
        is False
    )
    explicit = ["--training.metric_for_best_model", "mean_hd95", "--training.greater_is_better", "true"]
    assert load_config(config, explicit).training.greater_is_better is True


def test_train_help_lists_a_tasks_own_sections(capsys):
    from neurotrain_hf.cli import main

    assert main(["train", "--help", "detection"]) == 0
    out = capsys.readouterr().out
    assert "--augmentation.image_size" in out and "--augmentation.elastic" not in out
    assert main(["train", "--help"]) == 0
    assert "--augmentation" not in capsys.readouterr().out  # the shared sections and the task list only


def test_threshold_best_needs_a_validation_to_choose_it():
    config = RECIPES / "configs" / "synthetic_vessels.toml"
    assert load_config(config, ["--training.threshold", "best"]).training.threshold == "best"
    with pytest.raises(ConfigError, match="threshold = 'best' is chosen on validation: it needs evaluation"):
        load_config(config, ["--training.threshold", "best", "--training.eval_strategy", "no"])
    with pytest.raises(ConfigError, match="expected a number in \\[0, 1\\] or 'best'"):
        load_config(config, ["--training.threshold", "good"])
    with pytest.raises(ConfigError, match="contrastive losses are not summed"):
        load_config(RECIPES / "configs" / "clip_synthetic.toml", ["--training.loss", "infonce+siglip"])

"""The `neurotrain` command and the default recipe (what `make train` runs)."""

import json

import pytest

from neurotrain_hf.cli import main

from .conftest import RECIPES, run_python, tiny_config_dict, write_toml


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("models", "simple_cnn"),
        ("datasets", "digits"),
        ("losses", "focal"),
        ("metrics", "auc"),
        ("tasks", "classification"),
    ],
)
def test_list(kind, expected, capsys):
    assert main(["list", kind]) == 0
    assert expected in capsys.readouterr().out.split()


def test_list_models_shows_prefixes_and_wildcards(capsys):
    main(["list", "models"])
    out = capsys.readouterr().out.split()
    assert {"timm/<name>", "torchvision/<name>", "hf/<name>"} <= set(out)
    main(["list", "datasets", "cifar*"])
    assert capsys.readouterr().out.split() == ["cifar10", "cifar100"]


def test_env(capsys):
    assert main(["env"]) == 0
    assert "transformers:" in capsys.readouterr().out


def test_recipe_bad_config_exits_2_with_one_line(tmp_path):
    data = tiny_config_dict(tmp_path)
    data["model"]["name"] = "simple_cn"
    cfg = write_toml(tmp_path / "bad.toml", data)
    proc = run_python(["recipes/train_classification.py", str(cfg)])
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and proc.stderr.strip().count("\n") == 0
    assert "did you mean 'simple_cnn'" in proc.stderr


def test_train_test_predict_commands(tmp_path, capsys):
    from PIL import Image

    cfg = write_toml(tmp_path / "exp.toml", tiny_config_dict(tmp_path, training={"num_train_epochs": 1}))
    assert main(["train", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "run folder:" in out and "test metrics:" in out
    run = tmp_path / "runs" / "classification" / "t"
    assert main(["test", str(run / "config.toml")]) == 0
    assert json.loads(capsys.readouterr().out)["num_samples"] > 0
    Image.new("L", (8, 8), 128).save(tmp_path / "x.png")
    assert main(["predict", str(run), str(tmp_path / "x.png")]) == 0
    line = json.loads(capsys.readouterr().out)
    assert 0 <= line["label"] < 10


@pytest.mark.slow
def test_default_recipe_reaches_target_accuracy(tmp_path):
    """What `make train` runs: real digits, default CNN; >= 0.97 test accuracy."""
    proc = run_python(
        [
            "recipes/train_classification.py",
            str(RECIPES / "configs" / "digits_cnn.toml"),
            "--basic.output_dir",
            str(tmp_path),
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run folder:" in proc.stdout
    report = json.loads((tmp_path / "classification" / "digits_cnn" / "report.json").read_text())
    assert report["test"]["accuracy"] >= 0.97
    assert report["test"]["num_samples"] == 360

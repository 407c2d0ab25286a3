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


def test_without_a_test_split_the_validation_split_is_tested_and_named(tmp_path, capsys):
    """No test split (COCO has no public test annotations): the line names the split that was tested;
    with neither, one line says nothing was tested; never an empty success."""
    import csv

    from sklearn.metrics import accuracy_score

    training = {"num_train_epochs": 1, "metrics": ["accuracy"]}
    data = tiny_config_dict(tmp_path, dataset={"test_ratio": 0.0, "valid_ratio": 0.25}, training=training)
    assert main(["train", str(write_toml(tmp_path / "valid.toml", data))]) == 0
    *_, note, last = capsys.readouterr().out.strip().splitlines()
    assert note.startswith("run folder: ") and last.startswith('test metrics: {"split": "valid", ')
    run = tmp_path / "runs" / "classification" / "t"
    saved = json.loads((run / "valid_metrics.json").read_text())
    with open(run / "valid_per_sample.csv") as f:
        rows = list(csv.DictReader(f))
    assert saved["num_samples"] == len(rows) > 0
    accuracy = accuracy_score([r["label"] for r in rows], [r["prediction"] for r in rows])
    assert json.loads(last.split(": ", 1)[1])["accuracy"] == round(saved["accuracy"], 4) == round(accuracy, 4)
    assert not (run / "test_metrics.json").exists()

    data["basic"]["run_id"] = "none"
    data["dataset"]["valid_ratio"] = 0.0
    data["training"].update(eval_strategy="no", load_best_model_at_end=False)
    assert main(["train", str(write_toml(tmp_path / "none.toml", data))]) == 0
    *_, note, last = capsys.readouterr().out.strip().splitlines()
    assert (
        note
        == "nothing tested: the dataset has no non-empty test or valid split (it has train (256)); set [dataset] test_ratio"
    )
    assert last == "test metrics: {}" and not list((run.parent / "none").glob("*_metrics.json"))


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


@pytest.mark.parametrize("task", ["detection", "clip"])
@pytest.mark.parametrize("bad", ["missing", "corrupt", "truncated", "text", "folder"])
def test_predict_refuses_bad_input_in_one_line(task, bad, request, sample_images, tmp_path, capsys):
    """`neurotrain predict` on a detection or CLIP run: a missing, corrupt, truncated or non-image input
    (or a folder) is one line naming it, exit 2, and nothing predicted for the good file before it."""
    run = request.getfixturevalue(f"{task}_run")
    capsys.readouterr()  # what training the shared run printed
    good = str(sample_images["shape0"])
    paths = {
        "missing": tmp_path / "nowhere" / "gone.png",
        "corrupt": sample_images["corrupt"],
        "truncated": sample_images["truncated"],
        "text": tmp_path / "notes.JPG",
        "folder": tmp_path,
    }
    paths["text"].write_text("not an image\n")
    assert main(["predict", str(run), good]) == 0  # the good file alone is predicted
    assert json.loads(capsys.readouterr().out)["input"] == good
    assert main(["predict", str(run), good, str(paths[bad])]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith(f"error: {paths[bad]}: "), err

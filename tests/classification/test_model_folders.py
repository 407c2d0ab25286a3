"""Run folders hold standard transformers model folders: Auto classes load them, predictions agree."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

from neurotrain_hf.cli import main
from neurotrain_hf.config.sections import ModelConfig
from neurotrain_hf.models import get_model
from neurotrain_hf.runner import run as run_experiment

from ..conftest import TINY_VIT, make_config


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("digits")
    config = make_config(
        tmp_path,
        dataset={"max_samples": None},
        training={"num_train_epochs": 3, "learning_rate": 1e-2, "eval_strategy": "no", "save_strategy": "no"},
    )
    run_experiment(config)
    return config


def digit_pngs(folder, n=40):
    """PNG files of real digits (8-bit grey), named ``<index>_<label>.png``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    paths = []
    for i in range(n):
        path = folder / f"{i}_{bunch.target[-n + i]}.png"
        Image.fromarray((bunch.images[-n + i] * 255 / 16).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def test_model_folder_is_a_standard_transformers_folder(digits_run):
    folder = digits_run.run_dir / "model"
    names = {p.name for p in folder.iterdir()}
    assert names == {"config.json", "model.safetensors", "preprocessor_config.json"}
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "neurotrain_simple_cnn" and config["neurotrain_task"] == "classification"
    assert config["id2label"]["3"] == "3"


def test_auto_classes_predict_like_neurotrain_predict(digits_run, tmp_path, capsys):
    folder = digits_run.run_dir / "model"
    paths = digit_pngs(tmp_path)
    model = AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    processor = AutoImageProcessor.from_pretrained(str(folder))
    with torch.no_grad():
        logits = model(**processor([Image.open(p) for p in paths], return_tensors="pt")).logits
    probs = logits.softmax(-1)
    assert main(["predict", str(digits_run.run_dir), *map(str, paths)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["input"] for line in lines] == [str(p) for p in paths]
    assert [line["label"] for line in lines] == probs.argmax(-1).tolist()
    assert [line["score"] for line in lines] == pytest.approx(probs.max(-1).values.tolist(), abs=1e-6)
    truth = [int(p.stem.split("_")[1]) for p in paths]
    assert np.mean([line["label"] == y for line, y in zip(lines, truth)]) >= 0.6  # chance is 0.1


def test_predict_names_the_image_the_model_cannot_take(tmp_path, capsys):
    config = make_config(
        tmp_path,
        model={"name": "mlp", "kwargs": {"hidden": [16], "image_size": 8}},
        training={"num_train_epochs": 1},
    )
    run_experiment(config)
    good, big = tmp_path / "good.png", tmp_path / "big.png"
    Image.new("L", (8, 8), 10).save(good)
    Image.new("L", (16, 16), 10).save(big)  # the MLP takes 8x8 inputs only
    assert main(["predict", str(config.run_dir), str(good), str(big)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and str(big) in err[0] and "cannot take" in err[0]


@pytest.mark.parametrize(
    ("name", "kwargs", "channels"),
    [
        ("timm/test_resnet", {}, 1),
        ("torchvision/resnet18", {}, 1),
        (
            "hf/vit",
            TINY_VIT,
            3,
        ),
    ],
)
def test_zoo_models_save_and_load_with_auto_classes(tmp_path, name, kwargs, channels):
    config = ModelConfig(name=name, kwargs=kwargs)
    auto = "AutoModelForImageClassification"  # the classification task's Auto class
    model = get_model(name, config, num_labels=5, in_channels=channels, auto_class=auto).eval()
    model.save_pretrained(str(tmp_path))
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForImageClassification.from_pretrained(str(tmp_path)).eval()
    x = torch.randn(2, channels, 32 if channels == 1 else 16, 32 if channels == 1 else 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=x).logits, model(pixel_values=x).logits)


def test_pretrained_timm_stem_is_adapted_like_timm(tmp_path):
    """A 3-channel pretrained stem meeting 1-channel data: summed over RGB (timm's adapt_input_conv)."""
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    file = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(file))
    config = ModelConfig(
        name="timm/test_resnet", pretrained=True, kwargs={"pretrained_cfg_overlay": {"file": str(file)}}
    )
    model = get_model("timm/test_resnet", config, num_labels=5, in_channels=1)
    stem = next(k for k, v in source.state_dict().items() if v.dim() == 4)
    adapted = model.timm_model.state_dict()[stem]
    torch.testing.assert_close(adapted, source.state_dict()[stem].sum(dim=1, keepdim=True))


def test_torchvision_stem_adaptation_matches_timm():
    import torchvision
    from timm.models import adapt_input_conv

    from neurotrain_hf.tasks.classification.zoo import adapt_first_conv

    model = torchvision.models.resnet18(weights=None)
    original = model.conv1.weight.detach().clone()
    adapt_first_conv(model, 2)
    assert model.conv1.in_channels == 2
    torch.testing.assert_close(model.conv1.weight, adapt_input_conv(2, original))

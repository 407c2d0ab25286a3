"""neurotrain quantize: the folder reloads with from_pretrained in its quantized form, is smaller, predicts,
and the report's metrics are the quantized model's (checked by a hand-written loop over the test split)."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

from neurotrain_hf.cli import main
from tests.conftest import tiny_config_dict


@pytest.fixture(scope="module")
def digits_mlp(tmp_path_factory) -> Path:
    """Digits with an MLP (linear layers: what torchao quantizes), trained and tested."""
    from neurotrain_hf.config import build_config
    from neurotrain_hf.runner import run

    tmp = tmp_path_factory.mktemp("quant")
    data = tiny_config_dict(
        tmp,
        model={"name": "mlp", "kwargs": {"hidden": [128], "dropout": 0.0}},
        dataset={"name": "digits", "max_samples": 600, "test_ratio": 0.25},
        training={"num_train_epochs": 6, "eval_strategy": "no", "save_strategy": "no"},
    )
    run(build_config(data))
    return tmp / "runs" / "classification" / "t"


def _hand_accuracy(run: Path, model: torch.nn.Module) -> float:
    """Accuracy on the run's test split by a plain loop (the transforms of the dataset, argmax)."""
    from neurotrain_hf.config import load_config
    from neurotrain_hf.data import get_test_dataset

    test = get_test_dataset(load_config(str(run / "config.toml"), []))
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), 64):
            rows = test[start : start + 64]
            logits = model(pixel_values=torch.as_tensor(np.asarray(rows["pixel_values"]))).logits
            correct += int((logits.argmax(-1) == torch.as_tensor(rows["labels"])).sum())
    return correct / len(test)


def test_int8_weight_reloads_quantized_smaller_and_keeps_accuracy(
    digits_mlp, tmp_path, capsys, sample_images
):
    from transformers import AutoModelForImageClassification

    out = tmp_path / "q"
    assert main(["quantize", str(digits_mlp), "--method", "int8-weight", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("int8-weight: ") and "test accuracy" in line
    report = json.loads((out / "quantization_report.json").read_text())

    original = AutoModelForImageClassification.from_pretrained(str(digits_mlp / "model")).eval()
    quantized = AutoModelForImageClassification.from_pretrained(str(out)).eval()
    linear = [m for m in quantized.modules() if isinstance(m, torch.nn.Linear)]
    assert linear and all(type(m.weight).__name__ == "Int8Tensor" for m in linear)
    before = (digits_mlp / "model" / "model.safetensors").stat().st_size
    after = (out / "model.safetensors").stat().st_size
    assert after < 0.5 * before and report["bytes_after"] == after and report["bytes_before"] == before

    fp_acc, q_acc = _hand_accuracy(digits_mlp, original), _hand_accuracy(digits_mlp, quantized)
    assert report["metric"] == "accuracy"
    assert report["metric_fp32"] == pytest.approx(fp_acc) and report["metric_quantized"] == pytest.approx(
        q_acc
    )
    assert fp_acc > 0.8 and fp_acc - q_acc <= 0.01
    assert report["latency_fp32_s"] > 0 and report["latency_quantized_s"] > 0

    # the quantized folder serves `neurotrain predict` like the original
    image = str(sample_images["digit"])
    assert main(["predict", str(digits_mlp), image]) == 0
    want = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["predict", str(out), image]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["label"] == want["label"]


@pytest.mark.parametrize("method", ["int8-dynamic", "int4-weight"])
def test_other_torchao_methods_reload_and_agree_on_labels(digits_mlp, tmp_path, method):
    from transformers import AutoModelForImageClassification

    from neurotrain_hf.tools.quantize import quantize

    report = quantize(digits_mlp / "model", method, tmp_path / method)  # a bare model folder: no metrics
    assert report["metrics"] is None and report["parameters_quantized"] > 0.9 * report["parameters_total"]
    original = AutoModelForImageClassification.from_pretrained(str(digits_mlp / "model")).eval()
    quantized = AutoModelForImageClassification.from_pretrained(str(tmp_path / method)).eval()
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = original(pixel_values=x).logits, quantized(pixel_values=x).logits
    assert not torch.equal(a, b)  # really quantized
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.8


def test_refusals_are_one_line(classification_run, segmentation_run, tmp_path, capsys):
    # a U-Net has no linear layer: torchao quantizes none of it
    assert (
        main(["quantize", str(segmentation_run), "--method", "int8-weight", "--out", str(tmp_path / "s")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no linear layer" in err[0]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert (
        main(
            ["quantize", str(classification_run), "--method", "int8-weight", "--out", str(tmp_path / "full")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0]
    if find_spec("bitsandbytes") is None:
        assert (
            main(["quantize", str(classification_run), "--method", "bnb-8bit", "--out", str(tmp_path / "b")])
            == 2
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "needs bitsandbytes" in err[0]
    with pytest.raises(SystemExit):
        main(["quantize", str(classification_run), "--method", "int3", "--out", str(tmp_path / "c")])


@pytest.mark.parametrize("method", ["int8-weight", "int4-weight"])
def test_quantization_aware_training_saves_and_tests_the_quantized_model(tmp_path, method):
    """[quantization] qat = true: fake-quantized linears while training (checked in a checkpoint-free run
    by the saved folder), real quantized weights in model/, and the reported test accuracy is theirs."""
    from transformers import AutoModelForImageClassification

    from neurotrain_hf.config import build_config
    from neurotrain_hf.runner import run

    data = tiny_config_dict(
        tmp_path,
        model={"name": "mlp", "kwargs": {"hidden": [128], "dropout": 0.0}},
        dataset={"name": "digits", "max_samples": 600, "test_ratio": 0.25},
        training={"num_train_epochs": 6, "eval_strategy": "no", "save_strategy": "no"},
        quantization={"qat": True, "method": method},
    )
    report = run(build_config(data))
    run_dir = tmp_path / "runs" / "classification" / "t"
    model = AutoModelForImageClassification.from_pretrained(str(run_dir / "model")).eval()
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linear and all(type(m.weight).__name__ == "IntxUnpackedToInt8Tensor" for m in linear)
    assert {int(m.weight.qdata.min()) >= -8 and int(m.weight.qdata.max()) <= 7 for m in linear} == {
        method == "int4-weight"
    }
    accuracy = _hand_accuracy(run_dir, model)
    assert report["test"]["accuracy"] == pytest.approx(accuracy) and accuracy > 0.8


def test_qat_with_lora_is_one_line(tmp_path):
    from neurotrain_hf.config import build_config
    from neurotrain_hf.errors import ConfigError
    from neurotrain_hf.runner import run

    data = tiny_config_dict(tmp_path, quantization={"qat": True}, peft={"r": 4})
    with pytest.raises(ConfigError, match="qat = true cannot train a \\[peft\\] adapter"):
        run(build_config(data))


def test_a_clip_model_with_a_top_level_parameter_reloads_quantized(clip_run, tmp_path):
    """CLIPModel's logit_scale has no module: torchao's loader would split its name; the folder still loads."""
    from transformers import AutoModel

    from neurotrain_hf.tools.quantize import quantize

    quantize(clip_run / "model", "int8-weight", tmp_path / "q")
    original = AutoModel.from_pretrained(str(clip_run / "model")).eval()
    quantized = AutoModel.from_pretrained(str(tmp_path / "q")).eval()
    assert type(quantized.text_model.encoder.layers[0].mlp.fc1.weight).__name__ == "Int8Tensor"
    assert torch.equal(quantized.logit_scale, original.logit_scale)
    size = original.config.vision_config.image_size
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = original.get_image_features(pixel_values=x).pooler_output
        b = quantized.get_image_features(pixel_values=x).pooler_output
    assert not torch.equal(a, b) and torch.nn.functional.cosine_similarity(a, b).min() > 0.99

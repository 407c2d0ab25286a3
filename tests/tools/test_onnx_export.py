"""neurotrain export onnx: graphs that onnxruntime runs equal to PyTorch (checked here against the model's
own forward on fresh inputs), a parity check that exits 1 on a tampered graph or a failed export, and
`neurotrain predict DIR/model.onnx` giving PyTorch's answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurotrain_hf.cli import main


def _ort(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


def _export(run: Path, out: Path, capsys, *extra: str) -> dict:
    assert main(["export", "onnx", str(run), "--out", str(out), *extra]) == 0, capsys.readouterr().err
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("exported ") and "parity ok" in line
    return json.loads((out / "onnx_export.json").read_text())


def test_classifier_graph_equals_pytorch_at_two_batch_sizes_and_predicts_the_same(
    classification_run, sample_images, tmp_path, capsys
):
    from transformers import AutoModelForImageClassification

    report = _export(classification_run, tmp_path / "onnx", capsys, "--dynamic-batch")
    graph = report["graphs"]["model"]
    assert graph["agreement"] == {"same_top_label": 1.0} and graph["outputs"]["logits"]["max_abs"] <= 1e-4
    assert report["inputs_from"].startswith("test split")
    model = AutoModelForImageClassification.from_pretrained(str(classification_run / "model")).eval()
    for batch in (1, 5):  # sizes the export never saw
        x = torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = model(pixel_values=x).logits.numpy()
        (got,) = _ort(tmp_path / "onnx" / "model.onnx", {"pixel_values": x.numpy()})
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert (tmp_path / "onnx" / "preprocessor_config.json").is_file()
    image = str(sample_images["digit"])
    assert main(["predict", str(classification_run), image]) == 0
    want = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["predict", str(tmp_path / "onnx" / "model.onnx"), image]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-4)


def test_segmentation_graph_agrees_on_every_mask_pixel(segmentation_run, tmp_path, capsys):
    report = _export(segmentation_run, tmp_path / "onnx", capsys)
    graph = report["graphs"]["model"]
    assert graph["agreement"] == {"same_mask_pixels": 1.0} and graph["outputs"]["logits"]["max_abs"] <= 1e-4


def test_clip_exports_two_towers_with_the_same_retrieval_ranks(clip_run, tmp_path, capsys):
    from transformers import AutoModel

    report = _export(clip_run, tmp_path / "onnx", capsys, "--dynamic-batch")
    assert set(report["graphs"]) == {"image_encoder", "text_encoder"}
    assert all(g["agreement"] == {"same_retrieval_ranks": 1.0} for g in report["graphs"].values())
    model = AutoModel.from_pretrained(str(clip_run / "model")).eval()
    size = model.config.vision_config.image_size
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model.get_image_features(pixel_values=x)
    want = getattr(want, "pooler_output", want)
    want = torch.nn.functional.normalize(want, dim=-1).numpy()
    (got,) = _ort(tmp_path / "onnx" / "image_encoder.onnx", {"pixel_values": x.numpy()})
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert main(["predict", str(tmp_path / "onnx" / "image_encoder.onnx"), "x.png"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "graphs (image_encoder, text_encoder) are parts of the model" in err[0]


def test_a_tampered_graph_or_a_failed_export_exits_1_with_the_numbers(
    classification_run, tmp_path, capsys, monkeypatch
):
    import onnx

    from neurotrain_hf.tools import onnx_export

    write = onnx_export.write_graph

    def tampered(graph, path, opset, dynamic_batch):
        write(graph, path, opset, dynamic_batch)
        proto = onnx.load(str(path))
        init = next(i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)
        values = onnx.numpy_helper.to_array(init).copy()
        values.flat[0] += 0.5  # one weight changed: outputs move by far more than atol
        init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
        onnx.save(proto, str(path))

    monkeypatch.setattr(onnx_export, "write_graph", tampered)
    assert main(["export", "onnx", str(classification_run), "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "parity failed for model: model max abs diff" in err[0] and "atol 0.0001" in err[0]
    )
    report = json.loads((tmp_path / "bad" / "onnx_export.json").read_text())
    assert (
        report["graphs"]["model"]["ok"] is False
        and report["graphs"]["model"]["outputs"]["logits"]["max_abs"] > 1e-3
    )
    monkeypatch.undo()
    assert (
        main(["export", "onnx", str(classification_run), "--out", str(tmp_path / "op"), "--opset", "1"]) == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch.onnx.export failed" in err[0]


def test_a_detector_is_refused_in_one_line(detection_run, tmp_path, capsys):
    assert main(["export", "onnx", str(detection_run), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no ONNX export" in err[0]


def test_vlm_vision_tower_and_projector_equal_get_image_features(vlm_run, tmp_path, capsys):
    from transformers import AutoModelForImageTextToText

    report = _export(vlm_run, tmp_path / "onnx", capsys, "--dynamic-batch")
    assert report["graphs"]["vision_projector"]["outputs"]["image_features"]["max_abs"] <= 1e-4
    model = AutoModelForImageTextToText.from_pretrained(str(vlm_run / "model")).eval()
    size = model.config.vision_config.image_size
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # transformers' own path: one tensor per image
        want = torch.stack(list(model.get_image_features(pixel_values=x).pooler_output)).numpy()
    (got,) = _ort(tmp_path / "onnx" / "vision_projector.onnx", {"pixel_values": x.numpy()})
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("conditioning", ["class", "mask"])
def test_diffusion_denoiser_equals_the_pipelines_unet(tmp_path, capsys, conditioning):
    """The exported denoiser gives the saved diffusers UNet's prediction (the pipeline's own weights)."""
    from diffusers import UNet2DModel

    from neurotrain_hf.config import build_config
    from neurotrain_hf.runner import run

    dataset = {"name": "color_shapes", "image_size": 16, "num_samples": 48}
    if conditioning == "mask":
        dataset = {"name": "vessel_patches", "image_size": 16, "num_samples": 24}
    data = {
        "basic": {
            "task": "diffusion",
            "run_id": conditioning,
            "seed": 0,
            "output_dir": str(tmp_path / "runs"),
        },
        "model": {"name": "unet2d", "kwargs": {"block_out_channels": [8, 16], "attention_levels": []}},
        "dataset": dataset,
        "training": {"conditioning": conditioning, "max_steps": 2, "batch_size": 8, "eval_strategy": "no"},
        "testing": {"run_after_training": False},
    }
    run(build_config(data | {"training": {**data["training"], "save_strategy": "no", "report_to": "none"}}))
    run_dir = tmp_path / "runs" / "diffusion" / conditioning
    report = _export(run_dir, tmp_path / "onnx", capsys, "--dynamic-batch")
    graph = report["graphs"]["denoiser"]
    assert graph["outputs"]["prediction"]["max_abs"] <= 1e-4
    unet = UNet2DModel.from_pretrained(str(run_dir / "model" / "unet")).eval()
    channels = unet.config.in_channels
    g = torch.Generator().manual_seed(2)
    feed = {"sample": torch.randn(2, 3, 16, 16, generator=g), "timesteps": torch.tensor([3, 700])}
    extra = {}
    if conditioning == "class":
        feed["class_labels"] = torch.tensor([1, 0])
        extra["class_labels"] = feed["class_labels"]
        net_in = feed["sample"]
    else:
        feed["mask"] = (torch.rand(2, channels - 3, 16, 16, generator=g) > 0.5).float()
        net_in = torch.cat([feed["sample"], feed["mask"]], dim=1)
    with torch.no_grad():
        want = unet(net_in, feed["timesteps"], **extra).sample.numpy()
    (got,) = _ort(tmp_path / "onnx" / "denoiser.onnx", {k: v.numpy() for k, v in feed.items()})
    np.testing.assert_allclose(got, want, atol=1e-5)

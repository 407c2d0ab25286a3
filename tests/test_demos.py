"""The Gradio demos, launched on 127.0.0.1 and called through ``gradio_client`` like a Space.

Tiny models train in-process for a few steps (the demo is under test, not the model); each demo's
``/predict`` must agree with the package's ``Predictor`` (classification labels, segmentation masks
pixel for pixel through the PNG) or with cosine similarities computed directly (CLIP), refuse bad
uploads with a one-line message and keep answering. A headless Chromium screenshot of the
segmentation demo, opened on an example it segments on load, must not be blank.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from .conftest import free_port

pytest.importorskip("gradio", reason="the demos need gradio (pip install neurotrain-hf[demo])")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def runs(classification_run, segmentation_run, clip_run) -> dict[str, Path]:
    """The shared tiny runs (tests/helpers/tiny_runs.py); the segmentation one is copied: a test here
    edits its saved threshold."""
    copy = segmentation_run.parent / "seg_demo"
    shutil.copytree(segmentation_run, copy, dirs_exist_ok=True)
    return {"classification": classification_run, "segmentation": copy, "clip": clip_run}


@pytest.fixture(scope="module")
def images(sample_images) -> dict[str, Path]:
    assert Image.open(sample_images["digit16"]).mode == "I;16"
    return sample_images


@contextlib.contextmanager
def serve(demo):
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def segmentation_app(runs, images):
    from neurotrain_hf.demos import build_demo  # the model folder's task builds its demo
    from neurotrain_hf.predictor import Predictor

    model = runs["segmentation"] / "model"
    # a saved threshold at the median probability: a mask with both values, and the slider's default
    probability = Predictor.from_pretrained(model)(str(images["retina"]))["probability"]
    config = json.loads((model / "config.json").read_text())
    config["neurotrain_inference"]["threshold"] = float(np.median(probability))
    (model / "config.json").write_text(json.dumps(config))
    with serve(build_demo(str(runs["segmentation"]), examples=[images["retina"]])) as app:
        yield app


def _png(path) -> np.ndarray:
    image = Image.open(path)
    assert image.format == "PNG"
    return np.asarray(image)


def test_resolve_model_reads_the_environment(runs, monkeypatch):
    from neurotrain_hf.demos import MODEL_ENV, resolve_model
    from neurotrain_hf.errors import NeuroTrainError

    monkeypatch.setenv(MODEL_ENV, str(runs["clip"]))
    assert resolve_model() == runs["clip"] / "model"
    monkeypatch.delenv(MODEL_ENV)
    with pytest.raises(NeuroTrainError, match=MODEL_ENV):
        resolve_model()


def test_segmentation_mask_round_trip_is_exact(runs, images, segmentation_app):
    from neurotrain_hf.predictor import Predictor
    from neurotrain_hf.tasks.segmentation.postprocess import PostProcessConfig, postprocess

    url, client = segmentation_app
    predictor = Predictor.from_pretrained(runs["segmentation"])
    record = predictor(str(images["retina"]))
    mask_file, overlay_file = client.predict(handle_file(str(images["retina"])), api_name="/predict")
    mask = _png(mask_file)
    assert mask.dtype == np.uint8 and mask.shape == record["mask"].shape
    assert set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask, record["mask"].astype(np.uint8) * 255)
    overlay = _png(overlay_file)
    assert overlay.shape == (*mask.shape, 3)

    # a threshold and post-processing chosen in the UI: as computed directly
    cfg = PostProcessConfig(opening=1, fill_holes=True, min_size=5)
    mask_file, _ = client.predict(
        handle_file(str(images["retina"])), 0.3, 1, 0, True, 5, False, api_name="/predict"
    )
    expected = postprocess((record["probability"] >= 0.3).astype(np.uint8), 2, cfg)
    np.testing.assert_array_equal(_png(mask_file), expected * 255)

    # a 16-bit grey image where RGB is expected is converted, not refused
    mask_file, _ = client.predict(handle_file(str(images["digit16"])), api_name="/predict")
    np.testing.assert_array_equal(_png(mask_file), predictor(str(images["digit16"]))["mask"] * 255)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("corrupt", "not a readable image"),
        ("truncated", "corrupt"),
        ("huge", "5000 x 2 px is over the 4096 px limit"),
        ("icon", "ICO images are not accepted"),
    ],
)
def test_segmentation_refuses_bad_files_and_keeps_answering(images, segmentation_app, name, message):
    url, client = segmentation_app
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(images[name])), api_name="/predict")
    mask_file, _ = client.predict(handle_file(str(images["retina"])), api_name="/predict")
    assert _png(mask_file).shape == (64, 64)


def test_classification_labels_equal_the_predictor(runs, images):
    from neurotrain_hf.demos import build_demo  # the model folder's task builds its demo
    from neurotrain_hf.predictor import Predictor

    predictor = Predictor.from_pretrained(runs["classification"])
    with serve(build_demo(str(runs["classification"]))) as (url, client):
        for name in ("digit", "digit16", "retina"):  # grey, 16-bit grey, RGB into a grey model
            result = client.predict(handle_file(str(images[name])), api_name="/predict")
            record = predictor(str(images[name]))
            assert result["label"] == record["label_name"], name
            confidences = result["confidences"]
            assert len(confidences) == 5
            assert confidences[0]["confidence"] == pytest.approx(record["score"], abs=1e-6)
            assert [c["confidence"] for c in confidences] == sorted(
                (c["confidence"] for c in confidences), reverse=True
            )
        with pytest.raises(AppError, match="not a readable image"):
            client.predict(handle_file(str(images["corrupt"])), api_name="/predict")
        assert client.predict(handle_file(str(images["digit"])), api_name="/predict")["label"]


def test_clip_ranking_equals_cosine_similarity(runs, images):
    from transformers import CLIPModel, CLIPProcessor

    from neurotrain_hf.demos import build_demo  # the model folder's task builds its demo

    folder = runs["clip"] / "model"
    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
    shapes = [images[f"shape{i}"] for i in range(5)]
    text = "a small red circle at the top left"
    with torch.no_grad():
        pixels = processor(images=[np.asarray(Image.open(p)) for p in shapes], return_tensors="pt")
        image_embeds = model.get_image_features(**pixels)
        image_embeds = getattr(image_embeds, "pooler_output", image_embeds)
        tokens = processor(text=[text], padding="max_length", max_length=32, return_tensors="pt")
        text_embeds = model.get_text_features(**tokens)
        text_embeds = getattr(text_embeds, "pooler_output", text_embeds)
    cosine = torch.nn.functional.cosine_similarity(image_embeds, text_embeds, dim=-1).tolist()
    expected = sorted(range(5), key=lambda i: -cosine[i])
    labels = json.loads((folder / "config.json").read_text())["neurotrain_zero_shot"]["labels"]

    with serve(build_demo(str(folder))) as (url, client):
        ranking, zero_shot, gallery = client.predict(
            [handle_file(str(p)) for p in shapes], text, ", ".join(labels), api_name="/predict"
        )
        rows = ranking["data"]
        assert [row[1] for row in rows] == [shapes[i].name for i in expected]
        assert [row[0] for row in rows] == [1, 2, 3, 4, 5]
        assert [row[2] for row in rows] == pytest.approx([cosine[i] for i in expected], abs=1e-5)
        assert [item["caption"].split(". ")[1].split(" (")[0] for item in gallery] == [row[1] for row in rows]
        # zero-shot: every image's labels ranked, probabilities summing to 1
        assert len(zero_shot["data"]) == 5 * len(labels)
        for i in range(5):
            mine = [row for row in zero_shot["data"] if row[0] == shapes[i].name]
            assert sorted(row[2] for row in mine) == sorted(labels)
            assert sum(row[3] for row in mine) == pytest.approx(1.0, abs=1e-4)
        with pytest.raises(AppError, match="enter a text"):
            client.predict([handle_file(str(shapes[0]))], "", "", api_name="/predict")
        with pytest.raises(AppError, match="5000 x 2 px"):
            client.predict([handle_file(str(images["huge"]))], text, "", api_name="/predict")
        again, _, _ = client.predict([handle_file(str(shapes[0]))], text, "", api_name="/predict")
        assert again["data"][0][1] == shapes[0].name


def test_segmentation_screenshot_is_not_blank(segmentation_app, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not on PATH (CI installs it: apt-get install -y chromium)")
    url, client = segmentation_app
    shot = tmp_path / "segmentation.png"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--window-size=1200,900",
                f"--screenshot={shot}", url,
            ],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    assert shot.is_file(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    colours = len(np.unique(pixels, axis=0))
    assert colours > 1000, f"{colours} distinct colours: the page looks blank"

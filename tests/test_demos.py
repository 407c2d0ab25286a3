"""The Gradio demos, launched on 127.0.0.1 and called through ``gradio_client`` like a Space.

Tiny models train in-process for a few steps (the demo is under test, not the model); each demo's
``/predict`` must agree with the package's ``Predictor`` (classification labels, segmentation masks
pixel for pixel through the PNG, detections, 3D label volumes) or with cosine similarities computed
directly (CLIP), refuse bad uploads (corrupt, wrong kind, oversized) with one line naming the file and
no traceback, and keep answering. Every demo's queue is bounded. In headless Chromium the segmentation
page, opened on an example it segments on load, must show the predicted mask and the tinted overlay.
A load test (slow) sends good and bad requests from concurrent clients to demos served by a child
process: every good one answered correctly, every bad one refused with a message, flat peak RSS.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from .conftest import free_port


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


MB = 2**20
IMAGE_LIMIT, VOLUME_LIMIT = 20 * MB, 200 * MB  # the documented byte limits of the demos
UPLOAD_CAP = 2  # the server stops reading an upload at this multiple of the limit (HTTP 413)
QUEUE_SIZE, CONCURRENCY = 16, 1  # the documented queue of every demo


def tiny_volume_config(root: Path) -> dict:
    """A tiny 3D run (tests/helpers/tiny_runs.py style): a depth-2 U-Net on two synthetic_3d cases."""
    return {
        "basic": {"task": "segmentation", "run_id": "vol", "seed": 0, "output_dir": str(root / "runs")},
        "model": {"name": "unet", "kwargs": {"spatial_dims": 3, "depth": 2, "base_channels": 4}},
        "dataset": {"name": "synthetic_3d", "max_samples": 2, "spacing": [1.5, 1.5, 2.5]},
        "augmentation": {"patch_size": [16, 16, 8], "samples_per_volume": 1},
        "training": {"max_steps": 2, "batch_size": 2},
    }


@pytest.fixture(scope="module")
def volume_run(tmp_path_factory) -> Path:
    from .helpers.tiny_runs import train

    return train(tiny_volume_config(tmp_path_factory.mktemp("tiny_volume")))


@pytest.fixture(scope="module")
def uploads(sample_images, tmp_path_factory) -> dict[str, Path]:
    """Good inputs the shared samples lack (a detection image, a CT-like volume) and bad uploads."""
    import gzip

    import nibabel as nib

    from neurotrain_hf.tasks.detection.synthetic import _image
    from neurotrain_hf.tasks.segmentation.synthetic_volumes import case_affine, make_case

    folder = tmp_path_factory.mktemp("uploads")
    files = {name: folder / name for name in ("shapes.png", "notes.txt", "big.png", "capped.png")}
    files["shapes.png"].write_bytes(_image("test", 0)["image"]["bytes"])
    files["notes.txt"].write_text("a text file, not an image\n")
    files["big.png"].write_bytes(sample_images["retina"].read_bytes() + bytes(IMAGE_LIMIT))  # over the limit
    with open(files["capped.png"], "wb") as f:  # over the upload cap (sparse: no disk used here)
        f.truncate(UPLOAD_CAP * IMAGE_LIMIT + MB)
    image, _ = make_case(np.random.default_rng(3))
    case = folder / "case.nii.gz"
    nib.save(nib.Nifti1Image(image, case_affine(1, image.shape)), str(case))  # stored LPS
    files["case.nii.gz"] = case
    files["truncated.nii.gz"] = folder / "truncated.nii.gz"
    files["truncated.nii.gz"].write_bytes(case.read_bytes()[:2000])
    files["notes.nii.gz"] = folder / "notes.nii.gz"
    files["notes.nii.gz"].write_text("a text file, not a volume\n")
    files["retina.nii"] = folder / "retina.nii"  # a PNG under a NIfTI name
    files["retina.nii"].write_bytes(sample_images["retina"].read_bytes())
    for name, data, affine in (
        ("slice.nii.gz", np.zeros((64, 64), np.int16), np.eye(4)),  # a 2-D image
        ("coarse.nii.gz", image, np.diag([100.0, 100.0, 100.0, 1.0])),  # 1e5 x the voxels at 1.5 mm
        ("channels.nii.gz", np.stack([image] * 3, -1), case_affine(0, image.shape)),  # 3 channels
    ):
        files[name] = folder / name
        nib.save(nib.Nifti1Image(data, affine), str(files[name]))
    header = nib.Nifti1Header()  # 2048^3 voxels declared in a few hundred bytes
    header.set_data_dtype(np.uint8)
    header.set_data_shape((2048, 2048, 2048))
    files["bomb.nii.gz"] = folder / "bomb.nii.gz"
    files["bomb.nii.gz"].write_bytes(gzip.compress(header.binaryblock + bytes(1004)))
    files["huge.nii.gz"] = folder / "huge.nii.gz"
    with open(files["huge.nii.gz"], "wb") as f:  # over the volume limit (sparse)
        f.truncate(VOLUME_LIMIT + MB)
    return {**files, "retina.png": sample_images["retina"], "corrupt.png": sample_images["corrupt"]}


def refused(client, args: list, pattern: str) -> str:
    """The one-line message of a request the demo must refuse (``pattern``: a regex it matches)."""
    with pytest.raises(AppError) as caught:
        client.predict(*args, api_name="/predict")
    message = caught.value.message
    assert re.search(pattern, message) and "\n" not in message, message
    assert "Traceback" not in message and "/gradio/" not in message, message  # no server paths
    return message


def refused_at_upload(url: str, client, args: list, path: Path, cap: int) -> None:
    """An upload over the server's cap: gradio_client refuses to send it (the cap is in the app's
    config), and a plain HTTP upload is cut off by the server with one line and status 413."""
    with pytest.raises(
        ValueError, match=rf"^File .*{path.name} exceeds the maximum file size of {cap} bytes"
    ):
        client.predict(*args, api_name="/predict")
    with open(path, "rb") as f:
        response = httpx.post(f"{url}gradio_api/upload", files={"files": (path.name, f)}, timeout=60)
    assert response.status_code == 413, response.text
    assert response.text == f"File size exceeded maximum allowed size of {cap} bytes."


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


def detection_rows(record: dict) -> list[list]:
    """The demo's table computed from a Predictor record (label, score, box rounded as documented)."""
    return [
        [name, round(float(score), 4), *(round(float(v), 1) for v in box)]
        for name, score, box in zip(record["label_names"], record["scores"], record["boxes"])
    ]


def test_detection_refuses_bad_uploads_in_one_line_and_keeps_answering(detection_run, uploads, capfd, caplog):
    from neurotrain_hf.demos import build_demo  # the model folder's task builds its demo
    from neurotrain_hf.predictor import Predictor

    good = handle_file(str(uploads["shapes.png"]))
    expected = detection_rows(Predictor.from_pretrained(detection_run)(str(uploads["shapes.png"])))
    assert expected, "the tiny detector finds nothing at min_score 0: the comparison would be empty"
    with serve(build_demo(str(detection_run))) as (url, client):
        for name, pattern in (
            ("corrupt.png", r"^corrupt\.png: not a readable image \(corrupt, or not PNG"),
            ("notes.txt", r"^notes\.txt: not a readable image .*cannot identify image file 'notes\.txt'"),
            ("big.png", r"^big\.png: 20\.1 MB is over the 20\.0 MB limit$"),
        ):
            refused(client, [handle_file(str(uploads[name])), 0.0], pattern)
            _, table = client.predict(good, 0.0, api_name="/predict")
            assert table["data"] == expected, name
        capped = uploads["capped.png"]
        refused_at_upload(url, client, [handle_file(str(capped)), 0.0], capped, UPLOAD_CAP * IMAGE_LIMIT)
        _, table = client.predict(good, 0.0, api_name="/predict")
        assert table["data"] == expected
    err = capfd.readouterr().err
    assert "Traceback" not in err and not any(r.exc_info for r in caplog.records), err[-3000:]
    assert [r.message.startswith("refused: ") for r in caplog.records if r.name.startswith("neurotrain")] == [
        True
    ] * 3


def test_volume_demo_refuses_bad_uploads_in_one_line_and_keeps_answering(volume_run, uploads, capfd, caplog):
    import nibabel as nib

    from neurotrain_hf.demos import build_demo  # the model folder's task builds its demo
    from neurotrain_hf.predictor import Predictor

    case = uploads["case.nii.gz"]
    expected = Predictor.from_pretrained(volume_run).predict_files([str(case)])[0]["mask"]
    voxels = f"over the {2**26:,}-voxel limit"
    with serve(build_demo(str(volume_run))) as (url, client):
        for name, pattern in (
            ("truncated.nii.gz", r"^truncated\.nii\.gz: truncated or corrupt NIfTI data"),
            ("notes.nii.gz", r"^notes\.nii\.gz: not a readable NIfTI"),
            ("retina.png", r"^retina\.png: expected a NIfTI volume \(\.nii or \.nii\.gz\)$"),
            ("retina.nii", r"^retina\.nii: not a readable NIfTI"),
            ("slice.nii.gz", r"^slice\.nii\.gz: a 2-D image \(64 x 64\); upload a 3-D volume$"),
            ("bomb.nii.gz", rf"^bomb\.nii\.gz: 2048 x 2048 x 2048 voxels is {voxels} \(8,589,934,592\)$"),
            (
                "coarse.nii.gz",
                rf"^coarse\.nii\.gz: .* voxels once resampled to \[1\.5, 1\.5, 2\.5\] mm is {voxels}",
            ),
            ("channels.nii.gz", r"^channels\.nii\.gz: .*the volume has 3 channels, the model takes 1$"),
            ("huge.nii.gz", r"^huge\.nii\.gz: over the 200 MB limit for volumes$"),
        ):
            refused(client, [handle_file(str(uploads[name])), -1], pattern)
        mask_file, _, _ = client.predict(handle_file(str(case)), -1, api_name="/predict")
        assert np.array_equal(np.asarray(nib.load(mask_file).dataobj), expected)
    err = capfd.readouterr().err
    assert "Traceback" not in err and not any(r.exc_info for r in caplog.records), err[-3000:]
    assert [r.message.startswith("refused: ") for r in caplog.records if r.name.startswith("neurotrain")] == [
        True
    ] * 9


def test_every_demo_has_a_bounded_queue_and_upload_cap(runs, detection_run, volume_run):
    from neurotrain_hf.demos import build_demo  # the model folder's task builds its demo

    folders = [runs["classification"], runs["segmentation"], runs["clip"], detection_run, volume_run]
    for folder, limit in zip(folders, [IMAGE_LIMIT] * 4 + [VOLUME_LIMIT]):
        demo = build_demo(str(folder))
        queue = demo._queue
        assert (queue.max_size, queue.default_concurrency_limit) == (QUEUE_SIZE, CONCURRENCY), folder
        assert all(fn.concurrency_limit == "default" for fn in demo.fns.values()), folder
        demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
        try:
            assert demo.max_file_size == UPLOAD_CAP * limit, folder
        finally:
            demo.close()


def test_a_burst_beyond_the_queue_is_refused_and_the_rest_answered(runs, images, monkeypatch):
    """One request held in the model, 16 waiting: the next ones are refused at once, then all 17 answer."""
    from gradio_client.utils import QueueError

    from neurotrain_hf.demos import build_demo  # the model folder's task builds its demo
    from neurotrain_hf.predictor import Predictor

    expected = Predictor.from_pretrained(runs["classification"])(str(images["digit"]))["label_name"]
    started, release = threading.Event(), threading.Event()
    predict = Predictor.predict

    def held(self, *args, **kwargs):
        started.set()
        assert release.wait(60)
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", held)
    demo = build_demo(str(runs["classification"]))
    with serve(demo) as (url, client):
        try:
            digit = handle_file(str(images["digit"]))
            jobs = [client.submit(digit, api_name="/predict")]
            assert started.wait(30)
            jobs += [client.submit(digit, api_name="/predict") for _ in range(QUEUE_SIZE)]
            deadline = time.monotonic() + 30
            while len(demo._queue) < QUEUE_SIZE and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(demo._queue) == QUEUE_SIZE
            for _ in range(2):  # refused at once, not queued (a timeout here: the queue took it)
                with pytest.raises(QueueError, match="Queue is full"):
                    client.submit(digit, api_name="/predict").result(timeout=10)
        finally:
            release.set()
        assert [job.result(timeout=60)["label"] for job in jobs] == [expected] * (QUEUE_SIZE + 1)
        assert client.predict(digit, api_name="/predict")["label"] == expected


# --- the page in a real browser ------------------------------------------------------------------------
OUTPUT_IMAGES_JS = """(() => {
  const out = {};
  for (const id of ["mask", "overlay"]) {
    const img = document.querySelector(`#${id} img`);
    if (!img || !img.complete || !img.naturalWidth) return null;
    const r = img.getBoundingClientRect(), style = getComputedStyle(img);
    out[id] = {src: img.src, x: r.x, y: r.y, w: r.width, h: r.height, nw: img.naturalWidth,
               nh: img.naturalHeight, fit: style.objectFit, visibility: style.visibility,
               opacity: style.opacity};
  }
  return out;
})()"""
VIEWPORT = (1200, 900)


class DevTools:
    """Headless Chromium driven over its DevTools pipe (``--remote-debugging-pipe``: JSON messages
    separated by NUL bytes on fds 3 and 4), attached to one page."""

    def __init__(self, chromium: str, profile: str) -> None:
        to_chrome, from_chrome = os.pipe(), os.pipe()
        fds = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (to_chrome[0], from_chrome[1])]
        for fd in (*to_chrome, *from_chrome):
            if fd not in (to_chrome[1], from_chrome[0]):
                os.close(fd)
        self.write, self.read = to_chrome[1], from_chrome[0]
        args = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank",
        ]  # fmt: skip
        shell = f'exec "$@" 3<&{fds[0]} 4>&{fds[1]} {fds[0]}<&- {fds[1]}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", shell, "chromium", *args],
            pass_fds=fds,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in fds:
            os.close(fd)
        self.buffer, self.next_id, self.session = b"", 0, None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, timeout: float = 30, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self.write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    assert "error" not in reply, reply["error"]
                    return reply["result"]
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self.read], [], [], left)[0], f"{method}: no answer"
            chunk = os.read(self.read, 1 << 20)
            assert chunk, "chromium closed its DevTools pipe"
            self.buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.write)
        os.close(self.read)


def content_box(box: dict) -> tuple[float, float, float, float]:
    """(x, y, width, height) of the picture inside an <img> box, by its CSS object-fit (centred)."""
    fit, scale_x, scale_y = box["fit"], box["w"] / box["nw"], box["h"] / box["nh"]
    if fit != "fill":
        scale = {"contain": min(scale_x, scale_y), "scale-down": min(scale_x, scale_y, 1.0), "none": 1.0}[fit]
        scale_x = scale_y = scale
    w, h = box["nw"] * scale_x, box["nh"] * scale_y
    return box["x"] + (box["w"] - w) / 2, box["y"] + (box["h"] - h) / 2, w, h


def displayed(shot: np.ndarray, box: dict) -> np.ndarray:
    """The picture an <img> shows on screen, cut from the screenshot and resized to its natural size."""
    x, y, w, h = content_box(box)
    crop = Image.fromarray(shot).crop((round(x), round(y), round(x + w), round(y + h)))
    return np.asarray(crop.resize((box["nw"], box["nh"]), Image.BOX), dtype=np.float64)


@pytest.mark.requires("chromium")
def test_segmentation_page_shows_the_mask_and_the_overlay(runs, images, segmentation_app):
    """The page opens on the example it segments: Chromium must have decoded and laid out both output
    images, their files must be the Predictor's mask and the image tinted (PASCAL VOC colour of class 1,
    (128, 0, 0), at alpha 0.5) where the mask is foreground, and the screenshot must show them there."""
    from neurotrain_hf.predictor import Predictor

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    url, _ = segmentation_app
    rgb = np.asarray(Image.open(images["retina"]).convert("RGB"))
    foreground = Predictor.from_pretrained(runs["segmentation"])(str(images["retina"]))["mask"] > 0
    assert 0.05 < foreground.mean() < 0.95  # the saved threshold is the median probability
    mask = np.where(foreground, 255, 0).astype(np.uint8)
    overlay = rgb.copy()
    overlay[foreground] = np.rint(0.5 * rgb[foreground] + 0.5 * np.array([128.0, 0.0, 0.0]))

    with tempfile.TemporaryDirectory() as profile:
        browser = DevTools(chromium, profile)
        try:
            width, height = VIEWPORT
            browser.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                         deviceScaleFactor=1, mobile=False)  # fmt: skip
            browser.call("Page.navigate", url=url)
            deadline, boxes = time.monotonic() + 60, None
            while boxes is None and time.monotonic() < deadline:
                time.sleep(0.25)
                result = browser.call("Runtime.evaluate", expression=OUTPUT_IMAGES_JS, returnByValue=True)
                boxes = result["result"].get("value")
            assert boxes, "the page never showed both output images (#mask img, #overlay img)"
            time.sleep(0.5)  # one more frame for the layout to settle
            boxes = browser.call("Runtime.evaluate", expression=OUTPUT_IMAGES_JS, returnByValue=True)
            boxes = boxes["result"]["value"]
            data = browser.call("Page.captureScreenshot", format="png")["data"]
        finally:
            browser.close()
    shot = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    assert shot.shape[:2] == (height, width)
    for name, expected in (("mask", mask), ("overlay", overlay)):
        box = boxes[name]
        served = np.asarray(Image.open(io.BytesIO(httpx.get(box["src"], timeout=30).content)))
        assert np.array_equal(served, expected), f"the {name} the page loads is not the expected one"
        assert (box["nw"], box["nh"]) == (64, 64) and box["visibility"] == "visible" and box["opacity"] == "1"
        x, y, w, h = content_box(box)
        assert w >= 64 and h >= 64, box  # not shrunk
        assert 0 <= x <= width - w and 0 <= y <= height - h, box  # inside the screenshot
        on_screen = displayed(shot, box)
        expected_rgb = np.stack([expected] * 3, -1) if expected.ndim == 2 else expected
        error = np.abs(on_screen - expected_rgb).mean()
        assert error < 8, f"{name}: the screenshot differs from the image by {error:.1f} grey levels"
        if name == "overlay":  # the tint is visible: the shown overlay is far nearer it than the image
            untinted = np.abs(on_screen - rgb).mean()
            assert error < 0.25 * untinted, (error, untinted)


# --- under load: servers in child processes, concurrent clients -----------------------------------------
SERVE = """import sys, threading
from neurotrain_hf.demos import build_demo
for run, port in zip(sys.argv[1::2], sys.argv[2::2]):
    demo = build_demo(run)
    demo.launch(server_name="127.0.0.1", server_port=int(port), prevent_thread_lock=True, quiet=True)
print("ready", flush=True)
threading.Event().wait()
"""


@contextlib.contextmanager
def demo_process(runs: list[Path], timeout: float = 180):
    """The demos of ``runs`` served by one child process (as a Space's ``app.py`` serves one; one
    start-up for all): (pid, [url])."""
    from .conftest import OFFLINE, ROOT

    ports = [free_port() for _ in runs]
    cmd = [sys.executable, "-c", SERVE, *(str(x) for pair in zip(runs, ports) for x in pair)]
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=ROOT)
        try:
            up = select.select([proc.stdout], [], [], timeout)[0]
            if not (up and proc.stdout.readline().strip() == "ready"):
                log.seek(0)
                pytest.fail(f"the demo server did not start: {log.read()[-3000:]}")
            yield proc.pid, [f"http://127.0.0.1:{port}/" for port in ports]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def peak_rss(pid: int, reset: bool = False) -> int:
    """The kernel's peak resident set of process ``pid`` (VmHWM, bytes); ``reset``: then restart the
    peak from the current RSS (``/proc/PID/clear_refs``), so the next reading covers what follows."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    if reset:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return int(line.split()[1]) * 1024


def burst(url: str, jobs: list[tuple], clients: int, timeout: float = 60) -> list[str]:
    """Send ``jobs`` ((args, check); args a path: a plain HTTP upload of it) from ``clients`` threads, each
    its own Client; per job the problem (``check(result, error)`` returns '' when the outcome is right).
    Bounded: a timeout per request, one deadline for all."""
    todo = list(enumerate(jobs))
    problems: dict[int, str] = {}
    lock = threading.Lock()

    def loop() -> None:
        client = Client(url, verbose=False)
        while True:
            with lock:
                if not todo:
                    return
                index, (args, check) = todo.pop()
            try:
                if isinstance(args, Path):  # a plain HTTP upload (gradio_client refuses files over the cap)
                    with open(args, "rb") as f:
                        upload = {"files": (args.name, f)}
                        result = httpx.post(f"{url}gradio_api/upload", files=upload, timeout=timeout)
                else:
                    result = client.submit(*args, api_name="/predict").result(timeout=timeout)
                error = None
            except Exception as exc:  # noqa: BLE001 - the check judges every outcome
                result, error = None, exc
            with lock:
                problems[index] = check(result, error)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout * len(jobs) / clients + 30
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    return [problems.get(i, "no answer before the deadline") for i in range(len(jobs))]


def over_cap(cap: int):
    """A check: a plain upload over the server's cap is cut off with HTTP 413 and one line."""

    def check(result, error) -> str:
        expected = f"File size exceeded maximum allowed size of {cap} bytes."
        ok = error is None and result.status_code == 413 and result.text == expected
        return "" if ok else f"upload over the cap: {error or (result.status_code, result.text[:300])}"

    return check


def refusal(pattern: str):
    """A check: the request must fail with one line matching ``pattern`` (gradio's message or HTTP 413)."""

    def check(result, error) -> str:
        if error is None:
            return f"answered a bad upload ({pattern})"
        response = getattr(error, "response", None)
        message = response.text.strip() if response is not None else str(getattr(error, "message", error))
        one_line = "\n" not in message and "Traceback" not in message
        return "" if one_line and re.search(pattern, message) else f"refused badly: {message[:300]!r}"

    return check


@pytest.mark.slow
def test_demos_under_load_answer_good_refuse_bad_and_keep_memory_flat(detection_run, volume_run, uploads):
    """16 requests (every 4th a bad upload) from 4 clients to the detection and 3D demos, served by a child
    process: every good answer equals the Predictor's, every bad upload is refused with one line, and the
    server's peak RSS over the last 8 requests of a demo is < 10% above its peak over the first 8."""
    import nibabel as nib

    from neurotrain_hf.predictor import Predictor

    rows = detection_rows(Predictor.from_pretrained(detection_run)(str(uploads["shapes.png"])))
    volume = Predictor.from_pretrained(volume_run).predict_files([str(uploads["case.nii.gz"])])[0]["mask"]

    def same_rows(result, error) -> str:
        if error is not None:
            return f"detections: {error}"
        drawing = np.asarray(Image.open(result[0]))  # decodes whole: not cut short by a concurrent write
        ok = result[1]["data"] == rows and drawing.shape == (96, 96, 3)
        return "" if ok else f"detections: {result[1]}"

    def same_volume(result, error) -> str:
        if error is not None:
            return f"volume: {error}"
        return "" if np.array_equal(np.asarray(nib.load(result[0]).dataobj), volume) else "volume differs"

    def image(name: str):
        return handle_file(str(uploads[name]))

    demos = {
        detection_run: (
            [image("shapes.png"), 0.0],
            same_rows,
            [
                ([image("corrupt.png"), 0.0], refusal(r"^corrupt\.png: not a readable image")),
                ([image("notes.txt"), 0.0], refusal(r"^notes\.txt: not a readable image")),
                ([image("big.png"), 0.0], refusal(r"^big\.png: 20\.1 MB is over the 20\.0 MB limit$")),
                (uploads["capped.png"], over_cap(UPLOAD_CAP * IMAGE_LIMIT)),
            ],
        ),
        volume_run: (
            [image("case.nii.gz"), -1],
            same_volume,
            [
                ([image("truncated.nii.gz"), -1], refusal(r"^truncated\.nii\.gz: truncated or corrupt")),
                ([image("retina.png"), -1], refusal(r"^retina\.png: expected a NIfTI volume")),
                ([image("bomb.nii.gz"), -1], refusal(r"^bomb\.nii\.gz: .* over the 67,108,864-voxel limit")),
                ([image("notes.nii.gz"), -1], refusal(r"^notes\.nii\.gz: not a readable NIfTI")),
            ],
        ),
    }
    with demo_process(list(demos)) as (pid, urls):
        for url, (run, (good, check, bad)) in zip(urls, demos.items()):
            jobs = [(good, check) if i % 4 != 3 else bad[i // 4] for i in range(16)]
            peak_rss(pid, reset=True)
            problems = burst(url, jobs[:8], clients=4)
            first = peak_rss(pid, reset=True)  # the peak over the first 8 requests
            problems += burst(url, jobs[8:], clients=4)
            last = peak_rss(pid)  # over the last 8
            assert not any(problems), [p for p in problems if p]
            assert last < 1.10 * first, f"{run.name}: peak RSS {first / MB:.0f} MB -> {last / MB:.0f} MB"

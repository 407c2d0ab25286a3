"""The standard ``transformers.pipeline`` on our model folders gives what ``neurotrain predict`` gives.

One test per task, on the shared tiny runs (the equality is under test, not the model): classification
labels and scores, segmentation masks pixel for pixel (including an image whose size is not a multiple
of the network's pooling factor), detection boxes / scores / labels, CLIP zero-shot scores. The pipelines
load the folders through the Auto classes after ``import neurotrain_hf``, with no remote code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import neurotrain_hf  # noqa: F401  (registers our classes with the Auto classes)
from neurotrain_hf.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]


def test_image_classification_pipeline_equals_predict(classification_run, sample_images):
    from transformers import pipeline

    folder = classification_run / "model"
    classify = pipeline("image-classification", model=str(folder))
    predictor = Predictor.from_pretrained(folder)
    # 8-bit images (the pipeline's own loader converts every image to 8-bit RGB: 16-bit ones saturate)
    for name in ("digit", "retina"):  # grey, RGB into a grey model
        record = predictor(str(sample_images[name]))
        got = classify(str(sample_images[name]), top_k=10)
        names = predictor.model.config.id2label
        expected = sorted(((names[i], s) for i, s in enumerate(record["scores"])), key=lambda kv: -kv[1])
        assert [g["label"] for g in got] == [label for label, _ in expected], name
        np.testing.assert_allclose([g["score"] for g in got], [s for _, s in expected], rtol=0, atol=1e-5)
        assert got[0]["label"] == record["label_name"]


@pytest.fixture(scope="module")
def segmentation_folder(segmentation_run, sample_images, tmp_path_factory) -> Path:
    """The tiny run's model with its saved threshold at the median probability of a retina (a mask with
    both labels) and a post-processing step on: the pipeline must apply both, as the Predictor does."""
    folder = tmp_path_factory.mktemp("seg_pipeline") / "model"
    shutil.copytree(segmentation_run / "model", folder)
    probability = Predictor.from_pretrained(folder)(str(sample_images["retina"]))["probability"]
    config = json.loads((folder / "config.json").read_text())
    config["neurotrain_inference"]["threshold"] = float(np.median(probability))
    config["neurotrain_inference"]["postprocess"]["min_size"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_image_segmentation_pipeline_equals_predict_pixel_for_pixel(segmentation_folder, sample_images):
    from transformers import pipeline

    segment = pipeline("image-segmentation", model=str(segmentation_folder))
    predictor = Predictor.from_pretrained(segmentation_folder)
    assert predictor.model.config.id2label == {0: "background", 1: "foreground"}  # a binary (1-channel) head
    for name in ("retina", "retina_odd", "digit"):  # 64 px, 61 x 57 px (not a multiple of 2), grey
        mask = predictor(str(sample_images[name]))["mask"]
        image = Image.open(sample_images[name])
        assert mask.shape == (image.height, image.width)
        got = {item["label"]: np.asarray(item["mask"]) for item in segment(str(sample_images[name]))}
        present = {predictor.model.config.id2label[int(v)] for v in np.unique(mask)}
        assert set(got) == present, name
        if name == "retina":  # the saved median threshold: both labels present
            assert present == {"background", "foreground"}
        for label, picture in got.items():
            value = predictor.model.config.label2id[label]
            np.testing.assert_array_equal(picture, (mask == value).astype(np.uint8) * 255, err_msg=name)


def test_segmentation_processor_applies_the_saved_threshold(segmentation_folder, sample_images, caplog):
    """The settings come from config.json: the processor's post-processing follows a changed threshold."""
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    processor = AutoImageProcessor.from_pretrained(segmentation_folder)
    model = AutoModelForSemanticSegmentation.from_pretrained(segmentation_folder).eval()
    assert "model_config" not in processor.to_dict()  # the settings stay in config.json only
    image = Image.open(sample_images["retina"])
    with torch.no_grad():
        outputs = model(**processor(image, return_tensors="pt"))
    saved = processor.post_process_semantic_segmentation(outputs, target_sizes=[(64, 64)])[0]
    processor.model_config["neurotrain_inference"]["threshold"] = 0.0
    processor.model_config["neurotrain_inference"]["postprocess"]["min_size"] = 0
    everything = processor.post_process_semantic_segmentation(outputs, target_sizes=[(64, 64)])[0]
    assert everything.min() == 1 and 0 < saved.float().mean() < 1
    assert "Predictor" not in caplog.text
    processor.model_config["neurotrain_inference"]["mode"] = "sliding"  # not what one plain forward gives
    processor.post_process_semantic_segmentation(outputs, target_sizes=[(64, 64)])
    assert "settings use sliding windows" in caplog.text and "use neurotrain_hf.Predictor" in caplog.text


def _detection_images(tmp_path: Path) -> list[Path]:
    """The demo's example images, and one of them resized to a non-square, non-canvas size."""
    examples = sorted((ROOT / "spaces" / "detection-demo" / "examples").glob("*.png"))
    odd = tmp_path / "odd.png"
    Image.open(examples[0]).convert("RGB").resize((131, 77)).save(odd)
    return [*examples, odd]


def test_object_detection_pipeline_equals_predict(detection_run, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForObjectDetection, pipeline

    from neurotrain_hf.tasks.detection.inference import DetectionSettings

    folder = detection_run / "model"
    detect = pipeline("object-detection", model=str(folder))
    predictor = Predictor.from_pretrained(folder)
    processor = AutoImageProcessor.from_pretrained(folder)
    model = AutoModelForObjectDetection.from_pretrained(folder).eval()
    images = _detection_images(tmp_path)
    saved = predictor.predict([str(p) for p in images])  # at the saved score threshold
    scores = np.concatenate([r["scores"].numpy() for r in saved])
    assert len(scores) > 4
    saved_threshold = DetectionSettings.of(model.config).score_threshold
    assert _compare_detections(detect, predictor, processor, model, images, saved_threshold) == len(scores)
    median = float(np.median(scores))  # a pipeline threshold keeps about half of them, as predict does
    assert 0 < _compare_detections(detect, predictor, processor, model, images, median) < len(scores)


def _compare_detections(detect, predictor, processor, model, images, threshold) -> int:
    from neurotrain_hf.tasks.detection.inference import DetectionSettings

    settings = DetectionSettings.of(model.config)
    settings.score_threshold = threshold
    found = 0
    for path in images:
        record = predictor.predict([str(path)], settings=settings)[0]
        got = detect(str(path), threshold=threshold)
        assert [g["label"] for g in got] == record["label_names"], path.name
        np.testing.assert_allclose([g["score"] for g in got], record["scores"].tolist(), rtol=0, atol=1e-5)
        boxes = [[b["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for b in got]
        assert boxes == record["boxes"].int().tolist()  # the pipeline truncates boxes to whole pixels
        image = Image.open(path).convert("RGB")
        with torch.no_grad():
            outputs = model(**processor(image, return_tensors="pt"))
        (direct,) = processor.post_process_object_detection(outputs, threshold, [(image.height, image.width)])
        torch.testing.assert_close(direct["boxes"], record["boxes"], rtol=0, atol=1e-3)
        assert direct["labels"].tolist() == record["labels"].tolist()
        found += len(got)
    return found


def test_zero_shot_pipeline_equals_predict(clip_run, sample_images):
    from transformers import pipeline

    folder = clip_run / "model"
    classify = pipeline("zero-shot-image-classification", model=str(folder))
    predictor = Predictor.from_pretrained(folder)
    labels = predictor.settings["labels"]
    assert len(labels) >= 3 and predictor.settings["templates"] == ["a {}", "a picture of a {}"]
    one_template = {**predictor.settings, "templates": ["a picture of a {}"]}
    for i in range(5):
        path = str(sample_images[f"shape{i}"])
        record = predictor.predict([path], settings=one_template)[0]
        got = classify(path, candidate_labels=labels, hypothesis_template="a picture of a {}")
        assert {g["label"]: g["score"] for g in got} == pytest.approx(record["zero_shot"], abs=1e-5)
    saved = predictor(path)["zero_shot"]  # the saved templates, averaged per label
    assert set(saved) == set(labels) and sum(saved.values()) == pytest.approx(1.0, abs=1e-5)

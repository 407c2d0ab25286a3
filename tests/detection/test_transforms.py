"""Detection transforms keep boxes and masks on the pixels they describe, through crops, flips and letterbox."""

from __future__ import annotations

import io
import json

import numpy as np
import torch
from PIL import Image

from neurotrain_hf.tasks.detection.config import DetectionAugmentation as AugmentationConfig
from neurotrain_hf.tasks.detection.data import DetectionTransform
from neurotrain_hf.tasks.detection.processor import NeuroDetectionProcessor

RED = (230, 20, 20)


def _row(width=120, height=80):
    """An image with a red rectangle (box 1) and a blue triangle (box 2), their polygons and boxes."""
    pixels = np.full((height, width, 3), 120, np.uint8)
    pixels[20:50, 30:70] = RED
    tri = [90.0, 10.0, 110.0, 40.0, 90.0, 40.0]
    image = Image.fromarray(pixels)
    from PIL import ImageDraw

    ImageDraw.Draw(image).polygon(tri, fill=(20, 20, 230))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    objects = {
        "bbox": np.array([[30, 20, 70, 50], [90, 10, 111, 41]], np.float32),
        "category": np.array([0, 1]),
        "area": np.array([1200.0, 300.0], np.float32),
        "iscrowd": np.array([0, 0]),
        "segmentation": np.array(
            [json.dumps([[30, 20, 70, 20, 70, 50, 30, 50]]), json.dumps([tri])], dtype=object
        ),
        "id": np.array([1, 2]),
    }
    return {"bytes": buf.getvalue(), "path": None}, objects


def _canvas(pixel_values: torch.Tensor) -> np.ndarray:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return ((pixel_values * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def _red_box(canvas: np.ndarray) -> list[float]:
    red = (canvas[..., 0] > 170) & (canvas[..., 1] < 90) & (canvas[..., 2] < 90)
    ys, xs = np.nonzero(red)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], red


def test_train_transform_keeps_boxes_and_masks_on_their_pixels():
    checked = sum(_aligned(seed) for seed in range(8))
    assert checked >= 4  # the crops keep the rectangle in most draws: the check is not vacuous


def _aligned(seed: int) -> bool:
    """One augmented draw: True when the rectangle survived and its box and mask sit on its pixels."""
    image, objects = _row()
    aug = AugmentationConfig(horizontal_flip=0.5, vertical_flip=0.5)
    transform = DetectionTransform(
        NeuroDetectionProcessor(image_size=96),
        aug,
        train=True,
        masks=True,
        crop_probability=1.0,
        min_visible=0.0,
    )
    torch.manual_seed(seed)
    out = transform({"image": [image], "objects": [objects], "image_id": [0]})
    canvas = _canvas(out["pixel_values"][0])
    target = out["labels"][0]
    reds = (target["class_labels"] == 0).nonzero().flatten()
    if not len(reds):
        return False  # the crop left the rectangle out (min_visible 0 keeps any visible part)
    cx, cy, w, h = (target["boxes"][reds[0]] * 96).tolist()
    expected, red = _red_box(canvas)
    assert np.allclose([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], expected, atol=1.5)
    mask = target["masks"][reds[0]].numpy().astype(bool)
    assert (mask & red).sum() / (mask | red).sum() > 0.85
    assert out["pixel_mask"][0].sum() > 0 and out["pixel_values"].shape == (1, 3, 96, 96)
    return True


def test_crops_drop_boxes_mostly_outside_and_count_them():
    image, objects = _row()
    transform = DetectionTransform(
        NeuroDetectionProcessor(image_size=64),
        AugmentationConfig(),
        train=True,
        crop_probability=1.0,
        min_visible=0.99,
    )
    kept = 0
    for seed in range(20):
        torch.manual_seed(seed)
        out = transform({"image": [image], "objects": [objects], "image_id": [0]})
        kept += len(out["labels"][0]["class_labels"])
    assert transform.dropped[0] > 0 and kept + transform.dropped[0] == 40


def test_eval_transform_keeps_references_in_image_pixels():
    image, objects = _row()
    transform = DetectionTransform(NeuroDetectionProcessor(image_size=96), AugmentationConfig(), train=False)
    out = transform({"image": [image], "objects": [objects], "image_id": [7]})
    ref = out["references"][0]
    assert torch.equal(ref["boxes"], torch.as_tensor(objects["bbox"])) and ref["labels"].tolist() == [0, 1]
    assert out["original_size"].tolist() == [[80, 120]]
    assert (
        out["image_id"].tolist() == [7]
        and out["pixel_mask"][0, :64, :96].all()
        and not out["pixel_mask"][0, 64:].any()
    )
    # canvas boxes -> image pixels
    canvas_boxes = torch.as_tensor(objects["bbox"]) * (96 / 120)
    back = NeuroDetectionProcessor.to_original(canvas_boxes, 96 / 120, (80, 120))
    assert torch.allclose(back, torch.as_tensor(objects["bbox"]), atol=1e-4)

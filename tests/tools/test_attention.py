"""``neurotrain analyze attention``: Grad-CAM lights what a CNN looks at, rollout matches a hand-written
rollout of the model's own attentions, and the command writes its files or fails in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from neurotrain_hf.errors import NeuroTrainError
from neurotrain_hf.tools.attention import analyze_attention, grad_cam, rollout, summary_line, vision_tower

SIZE, HALF, SIDE = 32, 16, 6  # image side, quadrant side, planted square side
CORNERS = [(0, 0), (0, HALF), (HALF, 0), (HALF, HALF)]  # top-left, top-right, bottom-left, bottom-right


class QuadrantModel(nn.Module):
    """The project's ``simple_cnn`` behind a fixed mask: it sees one quadrant of the image and nothing else."""

    main_input_name = "pixel_values"

    def __init__(self, quadrant: int) -> None:
        super().__init__()
        from neurotrain_hf.models import get_model

        self.inner = get_model(
            "simple_cnn", {"kwargs": {"channels": [8, 16], "dropout": 0.0}}, num_labels=2, in_channels=1
        )
        mask = torch.zeros(1, 1, SIZE, SIZE)
        r, c = CORNERS[quadrant]
        mask[..., r : r + HALF, c : c + HALF] = 1
        self.register_buffer("mask", mask)

    def forward(self, pixel_values: torch.Tensor, **kwargs):
        return self.inner(pixel_values * self.mask, **kwargs)


def _plant(image: np.ndarray, quadrant: int, rng: np.random.Generator) -> tuple[int, int]:
    r, c = (corner + int(rng.integers(2, HALF - SIDE - 1)) for corner in CORNERS[quadrant])
    image[0, r : r + SIDE, c : c + SIDE] += 2.0
    return r, c


def _squares(quadrant: int, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images; label 1: a bright square in ``quadrant``; the other quadrants get squares at random
    (independent of the label)."""
    x = rng.normal(0.0, 0.3, (n, 1, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i in range(n):
        for q in range(4):
            if (q == quadrant and y[i]) or (q != quadrant and rng.random() < 0.5):
                _plant(x[i], q, rng)
    return torch.from_numpy(x), torch.from_numpy(y)


def _trained(quadrant: int) -> QuadrantModel:
    torch.manual_seed(quadrant)
    rng = np.random.default_rng(quadrant)
    model = QuadrantModel(quadrant)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        x, y = _squares(quadrant, 32, rng)
        loss = model(pixel_values=x, labels=y).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x, y = _squares(quadrant, 128, rng)
    model.eval()
    with torch.no_grad():
        accuracy = float((model(pixel_values=x).logits.argmax(1) == y).float().mean())
    assert accuracy > 0.9, f"the quadrant model did not learn its task (accuracy {accuracy:.2f})"
    return model


@pytest.mark.parametrize("quadrant", [0, 3])
def test_grad_cam_lights_the_only_quadrant_the_model_sees(quadrant):
    from neurotrain_hf.tasks.classification.task import ClassificationTask

    model = _trained(quadrant)
    rng = np.random.default_rng(100)
    image = rng.normal(0.0, 0.3, (1, SIZE, SIZE)).astype(np.float32)
    squares = [_plant(image, q, rng) for q in range(4)]  # one in every quadrant: one is evidence
    task = ClassificationTask()
    pixels = torch.from_numpy(image)[None]
    cam, target, layer = grad_cam(model, pixels, lambda out: task.explain_score(out))
    assert target == 1 and layer == "inner.net.4"  # "square present"; the last conv before pooling
    up = np.kron(cam, np.ones((SIZE // cam.shape[0], SIZE // cam.shape[1])))
    mass = [float(up[r : r + HALF, c : c + HALF].sum()) for r, c in CORNERS]
    assert mass[quadrant] > 0.8 * sum(mass), mass
    peak = np.unravel_index(int(up.argmax()), up.shape)
    r, c = CORNERS[quadrant]
    assert r <= peak[0] < r + HALF and c <= peak[1] < c + HALF
    # class-discriminative: the seen square (3.5% of the pixels) is evidence for "present", not "absent"
    r, c = squares[quadrant]
    on_square = float(up[r : r + SIDE, c : c + SIDE].sum() / up.sum())
    absent, _, _ = grad_cam(model, pixels, lambda out: task.explain_score(out, 0))
    absent = np.kron(absent, np.ones((SIZE // cam.shape[0], SIZE // cam.shape[1])))
    assert on_square > 0.15 and absent[r : r + SIDE, c : c + SIDE].sum() <= 0.05 * max(absent.sum(), 1e-12)


def _numpy_rollout(attentions: list[np.ndarray]) -> np.ndarray:
    """Abnar & Zuidema's rollout, written out: mean over heads, + identity, rows to 1, product of layers."""
    joint = np.eye(attentions[0].shape[-1])
    for layer in attentions:
        a = layer.astype(np.float64).mean(axis=0) + np.eye(layer.shape[-1])
        a = a / a.sum(axis=1, keepdims=True)
        joint = a @ joint
    return joint


def test_rollout_equals_a_hand_written_rollout(clip_run, sample_images, tmp_path):
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(str(clip_run / "model"), attn_implementation="eager")
    result = analyze_attention(clip_run, sample_images["shape1"], tmp_path)
    assert result["method"] == "rollout" and result["layer"] == "vision_model" and result["grid"] == [8, 8]
    pixels = torch.from_numpy(_clip_pixels(clip_run, sample_images["shape1"]))
    with torch.no_grad():
        attentions = model.vision_model(pixel_values=pixels, output_attentions=True).attentions
    assert len(attentions) == 3 and attentions[0].shape == (1, 4, 65, 65)  # CLS + 8x8 patches
    expected = _numpy_rollout([a[0].numpy() for a in attentions])[0, 1:].reshape(8, 8)
    assert expected.std() > 1e-4  # not a flat map that anything would match
    heat = np.load(result["files"]["heatmap"])
    assert heat.shape == (32, 32)
    np.testing.assert_allclose(heat[::4, ::4], expected, rtol=1e-5, atol=1e-7)  # 4 px patches
    row, col = np.unravel_index(int(expected.argmax()), expected.shape)
    assert result["peak"] == [row * 4 + 2, col * 4 + 2]


def _clip_pixels(run, image) -> np.ndarray:
    from transformers import CLIPProcessor

    processor = CLIPProcessor.from_pretrained(str(run / "model"))
    return processor.image_processor(images=[Image.open(image).convert("RGB")], return_tensors="np")[
        "pixel_values"
    ]


@pytest.mark.parametrize("cls_token", [True, False])
def test_rollout_of_a_vit_and_a_tower_without_cls(cls_token):
    """A ViT classifier is its own tower (CLS row); SigLIP has no CLS token (the mean row)."""
    from transformers import SiglipVisionConfig, SiglipVisionModel, ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    sizes = {"image_size": 16, "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2}
    sizes.update(num_attention_heads=2, intermediate_size=37)
    if cls_token:
        model = ViTForImageClassification(ViTConfig(**sizes, num_labels=3)).eval()
    else:
        model = SiglipVisionModel(SiglipVisionConfig(**sizes)).eval()
    name, tower = vision_tower(model)
    pixels = torch.randn(1, 3, 16, 16)
    grid = rollout(model, tower, pixels)
    with torch.no_grad():
        attentions = tower(pixel_values=pixels, output_attentions=True).attentions
    joint = _numpy_rollout([a[0].numpy() for a in attentions])
    expected = joint[0, 1:] if cls_token else joint.mean(axis=0)
    assert joint.shape[-1] == (17 if cls_token else 16)
    np.testing.assert_allclose(grid, expected.reshape(4, 4), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("run", "image", "method", "target"),
    [
        ("classification_run", "digit", "grad-cam", None),
        ("classification_run", "digit16", "grad-cam", 3),
        ("segmentation_run", "retina_odd", "grad-cam", None),
        ("clip_run", "shape0", "rollout", None),
        ("vlm_run", "shape1", "rollout", None),  # the LLaVA vision tower (its question-less image part)
    ],
)
def test_command_writes_overlay_heatmap_and_json(
    run, image, method, target, request, sample_images, tmp_path
):
    folder = request.getfixturevalue(run)
    result = analyze_attention(folder, sample_images[image], tmp_path / "out", target=target)
    assert result["method"] == method
    if target is not None:
        assert result["target"] == target
    with Image.open(result["files"]["overlay"]) as png:
        assert png.format == "PNG" and min(png.size) > 100
    heat = np.load(result["files"]["heatmap"])
    assert list(heat.shape) == result["input_size"] and np.isfinite(heat).all() and heat.max() > 0
    assert json.loads(Path(result["files"]["summary"]).read_text(encoding="utf-8")) == result
    peak = result["peak"]
    assert heat[peak[0], peak[1]] >= 0.5 * heat.max()
    line = summary_line(result)
    assert "\n" not in line and result["files"]["overlay"] in line and method in line


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert text and "\n" not in text
    return text


def test_what_cannot_be_explained_is_one_line(
    detection_run, classification_run, clip_run, sample_images, tmp_path
):
    with pytest.raises(NeuroTrainError) as exc:
        analyze_attention(detection_run, sample_images["shape0"], tmp_path)
    assert "cannot be explained" in _one_line(exc) and "detection" in str(exc.value)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    with pytest.raises(NeuroTrainError) as exc:
        analyze_attention(classification_run, notes, tmp_path)
    assert "notes.txt" in _one_line(exc)
    with pytest.raises(NeuroTrainError) as exc:
        analyze_attention(classification_run, sample_images["digit"], tmp_path, target=10)
    assert "--target 10" in _one_line(exc)
    with pytest.raises(NeuroTrainError) as exc:
        analyze_attention(clip_run, sample_images["shape0"], tmp_path, target=1)
    assert "rollout" in _one_line(exc)
    assert not list(tmp_path.glob("*_attention.*"))

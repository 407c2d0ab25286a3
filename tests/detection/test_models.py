"""Detection models: a few training steps, the eval output format and a save / Auto-class load round trip."""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch

import neurotrain_hf  # noqa: F401  (Auto-class registration)
from neurotrain_hf.errors import ConfigError
from neurotrain_hf.models import get_model

S = 64
NUM_LABELS = 3
TORCHVISION = ("fasterrcnn", "retinanet", "fcos", "maskrcnn")
TRANSFORMERS = ("detr_tiny", "conditional_detr_tiny", "rtdetr_tiny")
LOSS_KEYS = {
    "fasterrcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
    "maskrcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_mask"},
    "retinanet": {"classification", "bbox_regression"},
    "fcos": {"classification", "bbox_regression", "bbox_ctrness"},
}
# DETR decoders start from all-zero content queries, so in decoder layer 0 the projections of that content
# (self-attention values, and Conditional DETR's content query/key) see a zero input: their gradient is
# exactly zero by construction, whatever the data. Everything else must move.
STRUCTURALLY_ZERO_GRAD = {
    "detr_tiny": {"model.decoder.layers.0.self_attn.v_proj.weight"},
    "conditional_detr_tiny": {
        "model.decoder.layers.0.self_attn.q_content_proj.weight",
        "model.decoder.layers.0.self_attn.k_content_proj.weight",
        "model.decoder.layers.0.self_attn.v_proj.weight",
    },
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared CPU, OpenMP threads waiting on each other make steps 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str):
    torch.manual_seed(0)
    # score_threshold 0 keeps detections from an untrained model; a small RoI head keeps the test fast
    kwargs = (
        {"image_size": S, "score_threshold": 0.0, "representation_size": 128} if name in TORCHVISION else {}
    )
    return get_model(
        name, {"kwargs": kwargs}, num_labels=NUM_LABELS, auto_class="AutoModelForObjectDetection"
    )


def batch(with_masks: bool = False):
    """Two normalised S x S images: one with two boxes (normalised cxcywh), one with none."""
    gen = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(2, 3, S, S, generator=gen)
    boxes = torch.tensor([[0.3, 0.3, 0.25, 0.2], [0.7, 0.6, 0.3, 0.5]])
    first = {"class_labels": torch.tensor([0, 2]), "boxes": boxes}
    empty = {"class_labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}
    if with_masks:
        masks = torch.zeros(2, S, S, dtype=torch.uint8)
        for mask, (cx, cy, w, h) in zip(masks, (boxes * S).round().int().tolist()):
            mask[cy - h // 2 : cy + h // 2, cx - w // 2 : cx + w // 2] = 1
        first["masks"] = masks
        empty["masks"] = torch.zeros(0, S, S, dtype=torch.uint8)
    return pixel_values, torch.ones(2, S, S, dtype=torch.long), [first, empty]


def train_steps(model, name: str, steps: int = 3):
    pixel_values, pixel_mask, labels = batch(with_masks=name == "maskrcnn")
    before = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0)
    model.train()
    for _ in range(steps):
        out = model(pixel_values=pixel_values, pixel_mask=pixel_mask, labels=labels)
        assert math.isfinite(out.loss.item())
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    return out, before


@cache
def trained(name: str):
    """The model after 3 AdamW steps (shared by the tests of one model), its last output and first weights."""
    model = build(name)
    out, before = train_steps(model, name)
    return model, out, before


@pytest.mark.parametrize("name", TORCHVISION + TRANSFORMERS)
def test_training_moves_every_trainable_parameter(name):
    model, out, before = trained(name)
    assert before, "no trainable parameters"
    if name in LOSS_KEYS:
        assert set(out.loss_dict) == LOSS_KEYS[name]
        assert all(v.ndim == 0 for v in out.loss_dict.values())
    params = dict(model.named_parameters())
    unchanged = {k for k, p in before.items() if torch.equal(p, params[k])}
    dead = STRUCTURALLY_ZERO_GRAD.get(name, set())
    assert unchanged == dead
    for key in dead:  # unchanged only because their gradient is identically zero
        assert params[key].grad is None or not params[key].grad.any()
    if name in TRANSFORMERS:  # the random backbone is trained too (DETR freezes it by default)
        assert all(p.requires_grad for p in model.model.backbone.parameters())


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_eval_outputs_and_round_trip(name, tmp_path):
    from transformers import AutoModelForObjectDetection

    model = trained(name)[0].eval()
    pixel_values, pixel_mask, labels = batch(with_masks=name == "maskrcnn")
    with torch.no_grad():
        out = model(pixel_values=pixel_values, pixel_mask=pixel_mask)
        with_loss = model(pixel_values=pixel_values, labels=labels)
    assert out.loss is None and len(out.detections) == 2
    assert any(len(d["boxes"]) for d in out.detections)
    for det in out.detections:
        k = len(det["boxes"])
        assert det["boxes"].shape == (k, 4) and det["scores"].shape == (k,) and det["labels"].shape == (k,)
        assert det["labels"].dtype == torch.int64
        assert ((det["labels"] >= 0) & (det["labels"] < NUM_LABELS)).all()
        assert (det["boxes"] >= 0).all() and (det["boxes"] <= S).all()
        assert (det["boxes"][:, 2:] >= det["boxes"][:, :2]).all()  # xyxy
        if name == "maskrcnn":
            assert det["masks"].shape == (k, S, S)
            assert (det["masks"] >= 0).all() and (det["masks"] <= 1).all()
        else:
            assert "masks" not in det
    # eval loss: torchvision's training loss, computed without touching the eval mode
    assert math.isfinite(with_loss.loss.item()) and set(with_loss.loss_dict) == LOSS_KEYS[name]
    assert len(with_loss.detections) == 2
    assert not any(m.training for m in model.modules())

    model.save_pretrained(tmp_path)
    loaded = AutoModelForObjectDetection.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    with torch.no_grad():
        again = loaded(pixel_values=pixel_values)
    for a, b in zip(out.detections, again.detections):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformers_eval_outputs_and_round_trip(name, tmp_path):
    from transformers import AutoModelForObjectDetection

    model = trained(name)[0].eval()
    pixel_values, pixel_mask, labels = batch()
    with torch.no_grad():
        out = model(pixel_values=pixel_values, pixel_mask=pixel_mask)
        with_loss = model(pixel_values=pixel_values, pixel_mask=pixel_mask, labels=labels)
    queries = model.config.num_queries
    classes = NUM_LABELS + 1 if name == "detr_tiny" else NUM_LABELS  # DETR adds a "no object" logit
    assert out.logits.shape == (2, queries, classes) and out.pred_boxes.shape == (2, queries, 4)
    assert ((out.pred_boxes >= 0) & (out.pred_boxes <= 1)).all()  # normalised cxcywh of the canvas
    assert math.isfinite(with_loss.loss.item())
    assert model.config.id2label == {0: "0", 1: "1", 2: "2"}

    model.save_pretrained(tmp_path)
    loaded = AutoModelForObjectDetection.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    with torch.no_grad():
        again = loaded(pixel_values=pixel_values, pixel_mask=pixel_mask)
    torch.testing.assert_close(out.logits, again.logits, rtol=0, atol=0)
    torch.testing.assert_close(out.pred_boxes, again.pred_boxes, rtol=0, atol=0)


def test_builder_errors_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="pretrained"):
        get_model("fasterrcnn", {"pretrained": True}, num_labels=2)
    with pytest.raises(ConfigError, match="unknown kwargs"):
        get_model("retinanet", {"kwargs": {"anchor_size": [[8]]}}, num_labels=2)
    with pytest.raises(ConfigError, match="backbone"):
        get_model("fcos", {"kwargs": {"backbone": "resnet19"}}, num_labels=2)
    with pytest.raises(ConfigError, match="unknown kwargs"):
        get_model("detr_tiny", {"kwargs": {"num_querys": 5}}, num_labels=2)

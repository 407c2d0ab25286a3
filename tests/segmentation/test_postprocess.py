"""Segmentation post-processing and overlays on crafted masks with known answers; scipy as the reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from neurotrain_hf.drawing import OUTSIDE_FOV, PALETTE, mask_to_png_array, overlay_prediction
from neurotrain_hf.tasks.segmentation.overlay import FN_COLOUR, FP_COLOUR, TP_COLOUR, overlay, save_overlay
from neurotrain_hf.tasks.segmentation.postprocess import (
    PostProcessConfig,
    ball,
    labels_from_logits,
    postprocess,
    scores_to_labels,
)


def cfg(**kwargs) -> PostProcessConfig:
    return PostProcessConfig(**kwargs)


def square(shape=(15, 15), top=5, left=5, size=5) -> np.ndarray:
    out = np.zeros(shape, dtype=np.uint8)
    out[top : top + size, left : left + size] = 1
    return out


def ring(shape=(12, 12), gap: bool = False) -> np.ndarray:
    """A 1-px square ring around rows/cols 3..7; ``gap`` opens it into a C."""
    out = np.zeros(shape, dtype=np.uint8)
    out[2:9, 2:9] = 1
    out[3:8, 3:8] = 0
    if gap:
        out[5, 8] = 0
    return out


# ---- config ----


def test_config_fields_all_have_help_and_defaults_do_nothing():
    for f in dataclasses.fields(PostProcessConfig):
        assert f.metadata.get("help"), f.name
    default = PostProcessConfig()
    assert (default.opening, default.closing, default.connectivity) == (0, 0, 1)
    assert not default.active()
    labels = ring() + 2 * square((12, 12), 0, 9, 2)
    out = postprocess(labels, 3, default)
    np.testing.assert_array_equal(out, labels)
    assert out is not labels and out.dtype == labels.dtype


# ---- scores to labels ----


def test_threshold_is_inclusive_and_nan_is_background():
    import torch

    p = torch.tensor([[0.0, 0.49999], [0.5, 1.0], [float("nan"), 0.7]], dtype=torch.float64)
    logits = torch.logit(p)[None, None]  # one sigmoid channel whose probabilities are p
    labels, probability = scores_to_labels(logits, 0.5)
    assert labels[0].tolist() == [[0, 0], [1, 1], [0, 1]]
    torch.testing.assert_close(probability[0][:2], p[:2].float())
    assert scores_to_labels(logits, 1.0)[0][0].tolist() == [[0, 0], [0, 1], [0, 0]]


def test_labels_from_logits_one_sigmoid_channel():
    logits = np.array([[[-3.0, 0.0], [0.1, 5.0]]])  # (1, 2, 2); sigmoid(0) = 0.5 exactly
    np.testing.assert_array_equal(labels_from_logits(logits, 0.5), [[0, 1], [1, 1]])
    np.testing.assert_array_equal(labels_from_logits(logits, 0.6), [[0, 0], [0, 1]])  # sigmoid(.1)=.525
    assert labels_from_logits(logits).dtype == np.uint8


def test_labels_from_logits_softmax_argmax_and_3d():
    logits = np.zeros((3, 2, 2), dtype=np.float32)
    logits[0, 0, 0], logits[1, 0, 1], logits[2, 1, 0] = 4, 4, 4  # (1, 1) ties everywhere -> class 0
    np.testing.assert_array_equal(labels_from_logits(logits, threshold=0.99), [[0, 1], [2, 0]])
    volume = np.random.default_rng(0).normal(size=(3, 2, 4, 5))
    np.testing.assert_array_equal(labels_from_logits(volume), volume.argmax(0))
    with pytest.raises(ValueError, match="logits"):
        labels_from_logits(np.zeros(4))


# ---- morphology ----


def test_ball_shapes():
    np.testing.assert_array_equal(ball(1, 2), np.ones((3, 3), bool))  # diameter 3: the full square
    assert ball(2, 2).sum() == 21 and not ball(2, 2)[0, 0]  # 5x5 without corners
    assert ball(1, 3).sum() == 19 and not ball(1, 3)[0, 0, 0]  # centre + 6 faces + 12 edges


def test_opening_removes_speck_keeps_square_and_matches_scipy():
    labels = square()
    labels[1, 1] = 1  # speck
    labels[12, 2:4] = 1  # 2-px bar, thinner than the 3x3 element
    out = postprocess(labels, 2, cfg(opening=1))
    np.testing.assert_array_equal(out, square())
    ref = ndimage.binary_opening(labels.astype(bool), structure=ball(1, 2), iterations=1)
    np.testing.assert_array_equal(out.astype(bool), ref)


def test_closing_fills_one_pixel_gap_and_matches_scipy():
    labels = np.zeros((9, 15), dtype=np.uint8)
    labels[4, 2:13] = 1
    labels[4, 7] = 0
    out = postprocess(labels, 2, cfg(closing=1))
    expected = labels.copy()
    expected[4, 7] = 1
    np.testing.assert_array_equal(out, expected)
    ref = ndimage.binary_closing(labels.astype(bool), structure=ball(1, 2), iterations=1)
    np.testing.assert_array_equal(out.astype(bool), ref)  # object away from the border: same as scipy


def test_closing_keeps_objects_touching_the_border():
    labels = np.zeros((8, 8), dtype=np.uint8)
    labels[0:4, 0:3] = 1
    out = postprocess(labels, 2, cfg(closing=2))
    np.testing.assert_array_equal(out, labels)
    unpadded = ndimage.binary_closing(labels.astype(bool), structure=ball(2, 2), iterations=1)
    assert not unpadded[0, 0]  # what the padding avoids: scipy's closing erodes it from the border


def test_fill_holes_fills_a_ring_not_a_c_and_matches_scipy():
    filled = postprocess(ring(), 2, cfg(fill_holes=True))
    expected = np.zeros_like(ring())
    expected[2:9, 2:9] = 1
    np.testing.assert_array_equal(filled, expected)
    np.testing.assert_array_equal(filled.astype(bool), ndimage.binary_fill_holes(ring()))
    np.testing.assert_array_equal(postprocess(ring(gap=True), 2, cfg(fill_holes=True)), ring(gap=True))


def test_ball_opening_3d_matches_scipy():
    vol = np.zeros((11, 11, 11), dtype=np.uint8)
    offsets = np.indices(vol.shape) - 5
    vol[(offsets**2).sum(0) <= 9] = 1  # ball of radius 3
    vol[0, 0, 0] = vol[10, 1, 9] = 1  # specks
    out = postprocess(vol, 2, cfg(opening=1))
    ref = ndimage.binary_opening(vol.astype(bool), structure=ball(1, 3), iterations=1)
    np.testing.assert_array_equal(out.astype(bool), ref)
    assert out[0, 0, 0] == 0 and out[10, 1, 9] == 0 and out[5, 5, 5] == 1
    assert out.sum() > 0.9 * ((offsets**2).sum(0) <= 9).sum()


# ---- connected components ----


def test_min_size_removes_below_and_keeps_equal_or_above():
    labels = np.zeros((10, 20), dtype=np.uint8)
    labels[1, 1:4] = 1  # 3 px
    labels[5, 1:5] = 1  # 4 px
    labels[8, 10:15] = 1  # 5 px
    out = postprocess(labels, 2, cfg(min_size=4))
    expected = labels.copy()
    expected[1, 1:4] = 0
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(postprocess(labels, 2, cfg(min_size=1)), labels)


def test_keep_largest_per_class_independently():
    labels = np.zeros((10, 20), dtype=np.uint8)
    labels[0:2, 0:2] = 1  # class 1: 4 px
    labels[5:8, 0:3] = 1  # class 1: 9 px (largest)
    labels[0:4, 10:14] = 2  # class 2: 16 px (largest)
    labels[8:10, 10:15] = 2  # class 2: 10 px, larger than every class-1 part
    out = postprocess(labels, 3, cfg(keep_largest=True))
    expected = np.zeros_like(labels)
    expected[5:8, 0:3] = 1
    expected[0:4, 10:14] = 2
    np.testing.assert_array_equal(out, expected)


def test_connectivity_faces_versus_full_on_diagonal_pixels():
    labels = np.zeros((6, 6), dtype=np.uint8)
    labels[[0, 1, 2], [0, 1, 2]] = 1  # diagonal staircase, 3 px
    labels[5, 3:6] = 1  # straight bar, 3 px
    faces = postprocess(labels, 2, cfg(min_size=2, connectivity=1))
    full = postprocess(labels, 2, cfg(min_size=2, connectivity=2))
    expected_faces = labels.copy()
    expected_faces[[0, 1, 2], [0, 1, 2]] = 0  # three 1-px components
    np.testing.assert_array_equal(faces, expected_faces)
    np.testing.assert_array_equal(full, labels)  # one 3-px component each
    # connectivity above ndim means full; in 3D, 2 joins pixels sharing an edge, 1 does not
    vol = np.zeros((2, 2, 2), dtype=np.uint8)
    vol[0, 0, 0] = vol[0, 1, 1] = vol[1, 1, 1] = 1  # (0,0,0)-(0,1,1) share an edge
    np.testing.assert_array_equal(postprocess(labels, 2, cfg(min_size=2, connectivity=3)), labels)
    assert postprocess(vol, 2, cfg(min_size=3, connectivity=2)).sum() == 3
    assert postprocess(vol, 2, cfg(min_size=2, connectivity=1)).sum() == 2


def test_classes_are_processed_independently():
    labels = np.zeros((8, 14), dtype=np.uint8)
    labels[1:6, 1:6] = 1
    labels[1:6, 6:11] = 2  # touching class 1: neither is background for the other's opening
    np.testing.assert_array_equal(postprocess(labels, 3, cfg(opening=1)), labels)
    labels[3, 3] = 2  # a class-2 speck inside class 1
    removed = postprocess(labels, 3, cfg(min_size=2))
    assert removed[3, 3] == 0  # lost by class 2: background, not class 1 back
    assert postprocess(labels, 3, cfg(min_size=2, fill_holes=True))[3, 3] == 1  # class 1's hole


def test_higher_class_wins_a_pixel_both_classes_gain():
    labels = np.zeros((9, 15), dtype=np.uint8)
    labels[4, 2:13] = 1
    labels[1:8, 7] = 2
    labels[4, 7] = 0  # a gap in both lines
    out = postprocess(labels, 3, cfg(closing=1))
    expected = labels.copy()
    expected[4, 7] = 2
    np.testing.assert_array_equal(out, expected)


def test_order_fill_before_min_size_and_errors():
    kept = postprocess(ring(), 2, cfg(fill_holes=True, min_size=30))  # ring 24 px, filled 49 px
    np.testing.assert_array_equal(kept.astype(bool), ndimage.binary_fill_holes(ring()))
    assert postprocess(ring(), 2, cfg(min_size=30)).sum() == 0
    with pytest.raises(ValueError, match="outside"):
        postprocess(np.full((3, 3), 3), 3, cfg(min_size=2))
    with pytest.raises(ValueError, match="2D"):
        postprocess(np.zeros(4, dtype=np.uint8), 2, cfg(min_size=2))


# ---- overlays ----


def tiny_case():
    """4x4: row 0 TP, row 1 FP (pred 1, ref 0), row 2 FN, row 3 both background; col 3 wrong class."""
    ref = np.array([[1, 1, 1, 2], [0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=np.uint8)
    pred = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.uint8)
    return ref, pred


def test_overlay_exact_colours():
    ref, pred = tiny_case()
    image = np.full((4, 4, 3), 100, dtype=np.uint8)
    out = overlay(image, ref, pred, alpha=1.0)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :3], [TP_COLOUR] * 3)
    np.testing.assert_array_equal(out[0, 3], FP_COLOUR)  # wrong foreground class: an FP
    np.testing.assert_array_equal(out[1, :3], [FP_COLOUR] * 3)
    np.testing.assert_array_equal(out[2, :3], [FN_COLOUR] * 3)
    np.testing.assert_array_equal(out[1, 3], [100, 100, 100])
    np.testing.assert_array_equal(out[3], np.full((4, 3), 100))
    assert (TP_COLOUR, FP_COLOUR, FN_COLOUR) == ((0, 255, 0), (255, 0, 0), (0, 0, 255))
    half = overlay(image, ref, pred, alpha=0.25)  # 0.75 * 100 + 0.25 * 255 = 138.75 -> 139
    np.testing.assert_array_equal(half[0, 0], [75, 139, 75])
    np.testing.assert_array_equal(half[1, 0], [139, 75, 75])
    np.testing.assert_array_equal(half[2, 0], [75, 75, 139])
    np.testing.assert_array_equal(image, 100)  # input untouched


def test_overlay_binary_masks_stored_as_0_255():
    ref, pred = tiny_case()
    ref255 = (ref != 0).astype(np.uint8) * 255
    out = overlay(np.zeros((4, 4), np.uint8), ref255, pred, alpha=1.0, binary=True)
    np.testing.assert_array_equal(out[0], [TP_COLOUR] * 4)  # the wrong class is foreground too
    np.testing.assert_array_equal(out[2, :3], [FN_COLOUR] * 3)


def test_overlay_fov_dims_outside_and_leaves_it_uncoloured():
    ref, pred = tiny_case()
    image = np.full((4, 4, 3), 200, dtype=np.uint8)
    fov = np.ones((4, 4), dtype=bool)
    fov[:, 0] = False
    out = overlay(image, ref, pred, fov=fov, alpha=1.0)
    dim = round(200 * OUTSIDE_FOV)
    np.testing.assert_array_equal(out[:, 0], np.full((4, 3), dim))  # TP/FP/FN there are not drawn
    np.testing.assert_array_equal(out[0, 1], TP_COLOUR)
    np.testing.assert_array_equal(out[3, 1], [200, 200, 200])


def test_overlay_grey_and_float_inputs_agree_with_uint8_rgb():
    ref, pred = tiny_case()
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    expected = overlay(rgb, ref, pred)
    np.testing.assert_array_equal(overlay(grey, ref, pred), expected)
    np.testing.assert_array_equal(overlay(grey[..., None], ref, pred), expected)
    np.testing.assert_array_equal(overlay(grey.astype(np.float32) / 255, ref, pred), expected)
    clipped = overlay(np.full((4, 4), 2.0), ref, pred, alpha=0.0)
    np.testing.assert_array_equal(clipped, 255)
    with pytest.raises(ValueError, match="shape"):
        overlay(grey, ref[:3], pred)
    with pytest.raises(TypeError, match="dtype"):
        overlay(grey.astype(np.uint16), ref, pred)


def test_overlay_prediction_tints_foreground_with_palette():
    pred = np.array([[0, 1], [2, 0]], dtype=np.uint8)
    out = overlay_prediction(np.zeros((2, 2), np.uint8), pred, alpha=1.0)
    np.testing.assert_array_equal(out, PALETTE[pred.astype(int)] * (pred != 0)[..., None])
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    assert tuple(PALETTE[1]) == (128, 0, 0) and tuple(PALETTE[2]) == (0, 128, 0)


def test_mask_to_png_array_binary_and_palette():
    binary = np.array([[0, 1], [1, 0]])
    np.testing.assert_array_equal(mask_to_png_array(binary), [[0, 255], [255, 0]])
    assert mask_to_png_array(binary).dtype == np.uint8
    multi = np.array([[0, 1], [2, 3]])
    np.testing.assert_array_equal(mask_to_png_array(multi), PALETTE[multi])
    assert mask_to_png_array(binary, num_labels=4).shape == (2, 2, 3)  # multi-class dataset: colours
    assert len({tuple(c) for c in PALETTE}) == 256  # every label its own colour


def test_save_overlay_png_round_trip_is_exact(tmp_path):
    ref, pred = tiny_case()
    image = np.random.default_rng(0).random((4, 4, 3))
    fov = np.ones((4, 4), dtype=np.uint8)
    fov[3, 3] = 0
    path = save_overlay(tmp_path / "sub" / "case.png", image, ref, pred, fov=fov)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        back = np.asarray(png)
    np.testing.assert_array_equal(back, overlay(image, ref, pred, fov=fov))

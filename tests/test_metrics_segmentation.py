"""neurotrain/dice, iou and nsd against MONAI."""

import warnings

import numpy as np
import pytest
import torch

from neurotrain_hf.metrics.overlap import OverlapAccumulator, compute_dice, compute_iou
from neurotrain_hf.metrics.surface import SurfaceDiceAccumulator, compute_nsd

from .metric_refs import blobs, monai_onehot


def nanmean0(a):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.nanmean(a, axis=0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("shape", [(20, 24), (6, 10, 12)])
def test_dice_iou_match_monai(seed, include_background, shape):
    from monai.metrics import compute_dice as monai_dice
    from monai.metrics import compute_iou as monai_iou

    rng = np.random.default_rng(seed)
    c = 4
    preds = [rng.integers(0, c, shape) for _ in range(5)]
    refs = [rng.integers(0, c - (i % 2), shape) for i in range(5)]  # class 3 absent from some references
    refs[0][:] = 0
    p, r = monai_onehot(preds, c), monai_onehot(refs, c)
    for ours_fn, ref_fn, key in ((compute_dice, monai_dice, "dice"), (compute_iou, monai_iou, "iou")):
        ref = ref_fn(p, r, include_background=include_background, ignore_empty=True).numpy()
        ours = ours_fn(preds, refs, c, include_background=include_background)
        per_class = np.array(ours[f"per_class_{key}"])
        expected = nanmean0(ref)
        offset = 0 if include_background else 1
        np.testing.assert_allclose(per_class[offset:], expected, atol=1e-6, equal_nan=True)
        assert ours[f"mean_{key}"] == pytest.approx(float(np.nanmean(expected)), abs=1e-6)
        if not include_background:
            assert np.isnan(per_class[0])


def test_global_average_pools_counts_and_streams():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 3, (8, 8)) for _ in range(6)]
    refs = [rng.integers(0, 3, (8, 8)) for _ in range(6)]
    inter = [sum(((p == k) & (r == k)).sum() for p, r in zip(preds, refs)) for k in range(3)]
    sizes = [sum((p == k).sum() + (r == k).sum() for p, r in zip(preds, refs)) for k in range(3)]
    out = compute_dice(preds, refs, 3, average="global", include_background=True)
    assert out["per_class_dice"] == pytest.approx([2 * i / s for i, s in zip(inter, sizes)])
    acc = OverlapAccumulator("dice", 3, average="global", include_background=True)
    for i in range(0, 6, 4):
        acc.update(preds[i : i + 4], refs[i : i + 4])
    assert acc.compute()["per_class_dice"] == pytest.approx(out["per_class_dice"])


def test_ignore_index_and_edge_cases():
    pred = np.array([[1, 1], [2, 0]])
    ref = np.array([[1, 255], [2, 2]])
    out = compute_dice([pred], [ref], 3, ignore_index=255)
    assert out["per_class_dice"][1] == pytest.approx(1.0)  # the 255 pixel does not count against class 1
    assert out["per_class_dice"][2] == pytest.approx(2 / 3)
    same = compute_iou([ref.clip(0, 2)], [ref.clip(0, 2)], 3)
    assert same["mean_iou"] == 1.0
    empty = compute_dice([np.zeros((3, 3), int)], [np.zeros((3, 3), int)], 2)
    assert np.isnan(empty["mean_dice"]) and np.isnan(empty["per_class_dice"][1])
    one_class = compute_dice([np.ones((3, 3), int)], [np.ones((3, 3), int)], 2)
    assert one_class["mean_dice"] == 1.0


@pytest.mark.parametrize(
    ("preds", "refs", "match"),
    [
        ([np.zeros((2, 2), int)], [np.zeros((2, 3), int)], "sample 0: prediction shape"),
        ([np.full((2, 2), 5)], [np.zeros((2, 2), int)], "sample 0: prediction label 5 outside"),
        ([], [], "predictions is empty"),
        ([np.zeros(4, int)], [np.zeros(4, int)], "expected a 2D"),
    ],
)
def test_overlap_bad_input(preds, refs, match):
    with pytest.raises(ValueError, match=match):
        compute_dice(preds, refs, 3)


@pytest.mark.parametrize("use_subvoxels", [False, True])
@pytest.mark.parametrize(("shape", "spacing"), [((40, 50), (0.7, 1.3)), ((18, 20, 16), (2.0, 0.8, 1.1))])
def test_nsd_matches_monai_per_image(use_subvoxels, shape, spacing):
    from monai.metrics import compute_surface_dice

    c = 4
    preds = [blobs(shape, c, i) for i in range(3)]
    refs = [blobs(shape, c, i + 7) for i in range(3)]
    refs[0][refs[0] == 2] = 1  # class 2 absent from one reference: NSD 0
    preds[1][preds[1] == 3] = 0
    refs[1][refs[1] == 3] = 0  # class 3 absent from both: NaN
    tol = [1.0, 1.5, 2.5]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = compute_surface_dice(
            monai_onehot(preds, c),
            monai_onehot(refs, c),
            tol,
            spacing=list(spacing),
            use_subvoxels=use_subvoxels,
        ).numpy()
    acc = SurfaceDiceAccumulator(c, tol, spacing, use_subvoxels=use_subvoxels)
    ours = np.stack([acc.per_image(p, r)[1:] for p, r in zip(preds, refs)])
    np.testing.assert_allclose(ours, ref, atol=1e-6, equal_nan=True)
    assert np.isnan(ours[1, 2]) and ours[0, 1] == 0
    out = compute_nsd(preds, refs, c, tolerance=tol, spacing=spacing, use_subvoxels=use_subvoxels)
    np.testing.assert_allclose(out["per_class_nsd"][1:], nanmean0(ref), atol=1e-6, equal_nan=True)


def test_nsd_identical_and_errors():
    m = np.zeros((10, 10), int)
    m[2:7, 3:8] = 1
    assert compute_nsd([m], [m], 2, tolerance=0.0)["mean_nsd"] == 1.0
    with pytest.raises(ValueError, match="tolerance has 2 values for 1 evaluated classes"):
        compute_nsd([m], [m], 2, tolerance=[1.0, 2.0])
    with pytest.raises(ValueError, match="tolerance must be finite and >= 0"):
        compute_nsd([m], [m], 2, tolerance=-1.0)
    # torch tensors are accepted as well as numpy arrays
    assert compute_nsd([torch.as_tensor(m)], [torch.as_tensor(m)], 2, tolerance=1.0)["mean_nsd"] == 1.0


def test_segmentation_and_detection_families_stream_by_name():
    from neurotrain_hf.metrics import StreamingMetrics

    from .metric_refs import random_detection_case

    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 3, (10, 10)) for _ in range(4)]
    refs = [rng.integers(0, 3, (10, 10)) for _ in range(4)]
    sm = StreamingMetrics(
        ["mean_dice", "mean_iou", "mean_nsd"], ["segmentation"], num_labels=3, nsd_tolerance=1.0
    )
    for part in (slice(0, 2), slice(2, 4)):
        batch = {"labels": torch.as_tensor(np.stack(preds[part])), "probability": None}
        sm.update(batch, {"labels": torch.as_tensor(np.stack(refs[part]))})
    out = sm.compute()
    assert out["mean_dice"] == pytest.approx(compute_dice(preds, refs, 3)["mean_dice"])
    assert out["mean_iou"] == pytest.approx(compute_iou(preds, refs, 3)["mean_iou"])
    assert out["mean_nsd"] == pytest.approx(compute_nsd(preds, refs, 3, tolerance=1.0)["mean_nsd"])
    p, r = random_detection_case(1, n_img=6)
    det = StreamingMetrics(["map", "f1_50"], ["detection"])
    det.update(p, r)
    assert set(det.compute()) == {"map", "f1_50"}

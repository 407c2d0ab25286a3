"""neurotrain/detection_map and segmentation_map against pycocotools COCOeval."""

import numpy as np
import pytest

from neurotrain_hf.metrics.detection import DetectionAccumulator, compute_detection_map

from .metric_refs import COCO_KEYS, boxes_to_masks, hand_f1, pycocotools_stats, random_detection_case


@pytest.mark.parametrize("seed", range(12))
def test_bbox_matches_pycocotools(seed):
    preds, refs = random_detection_case(seed)
    ours = compute_detection_map(preds, refs)
    ref = pycocotools_stats(preds, refs)
    for key in COCO_KEYS:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6), key


@pytest.mark.parametrize("seed", range(4))
def test_segm_matches_pycocotools(seed):
    preds, refs = random_detection_case(seed, n_img=8)
    preds, refs = boxes_to_masks(preds), boxes_to_masks(refs)
    ours = compute_detection_map(preds, refs, iou_type="segm")
    ref = pycocotools_stats(preds, refs, iou_type="segm")
    for key in COCO_KEYS:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6), key


def test_streaming_batches_equal_one_shot_and_custom_params():
    preds, refs = random_detection_case(5, n_img=30)
    kwargs = {
        "iou_thresholds": [0.3, 0.5, 0.75],
        "max_detection_thresholds": [2, 5, 20],
        "class_metrics": True,
    }
    acc = DetectionAccumulator(**kwargs)
    for start in range(0, 30, 7):
        acc.update(preds[start : start + 7], refs[start : start + 7])
    streamed, one_shot = acc.compute(), compute_detection_map(preds, refs, **kwargs)
    assert streamed.keys() == one_shot.keys()
    for key, value in one_shot.items():
        assert streamed[key] == pytest.approx(value), key
    ref = pycocotools_stats(preds, refs, max_dets=(2, 5, 20), iou_thrs=[0.3, 0.5, 0.75], per_class=True)
    prec, rec = (
        ref["precision"],
        ref["recall"],
    )  # COCOeval.summarize assumes maxDets 1/10/100: read the arrays

    def mean(a):
        return float(a[a > -1].mean()) if (a > -1).any() else -1.0

    expected = {
        "map": mean(prec[:, :, :, 0, -1]),
        "map_50": mean(prec[1, :, :, 0, -1]),
        "map_75": mean(prec[2, :, :, 0, -1]),
        "mar_2": mean(rec[:, :, 0, 0]),
        "mar_5": mean(rec[:, :, 0, 1]),
        "mar_20": mean(rec[:, :, 0, 2]),
        "mar_large": mean(rec[:, :, 3, 2]),
        "map_small": mean(prec[:, :, :, 1, -1]),
    }
    for key, value in expected.items():
        assert streamed[key] == pytest.approx(value, abs=1e-6), key
    assert streamed["map_per_class"] == pytest.approx(ref["map_per_class"], abs=1e-6)
    assert streamed["map_per_class"][-1] == -1  # the class only predictions have


@pytest.mark.parametrize("fmt", ["xywh", "cxcywh"])
def test_box_formats(fmt):
    preds, refs = random_detection_case(3)
    base = compute_detection_map(preds, refs)

    def convert(items):
        out = []
        for it in items:
            b = np.asarray(it["boxes"], float).reshape(-1, 4)
            wh = b[:, 2:] - b[:, :2]
            new = np.c_[b[:, :2], wh] if fmt == "xywh" else np.c_[b[:, :2] + wh / 2, wh]
            out.append({**it, "boxes": new})
        return out

    assert compute_detection_map(convert(preds), convert(refs), box_format=fmt) == pytest.approx(base)


def test_edge_cases():
    ref = [{"boxes": [[0, 0, 10, 10]], "labels": [1]}]
    perfect = compute_detection_map([{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [1]}], ref)
    assert perfect["map"] == pytest.approx(1.0) and perfect["f1_50"] == 1.0
    none = compute_detection_map([{"boxes": np.zeros((0, 4)), "scores": [], "labels": []}], ref)
    assert none["map"] == 0.0 and none["mar_100"] == 0.0 and none["f1_50"] == 0.0
    no_refs = compute_detection_map(
        [{"boxes": [[0, 0, 5, 5]], "scores": [0.5], "labels": [0]}],
        [{"boxes": np.zeros((0, 4)), "labels": []}],
    )
    assert no_refs["map"] == -1 and no_refs["f1_50"] == -1
    given_area = compute_detection_map(
        [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [1]}],
        [{"boxes": [[0, 0, 10, 10]], "labels": [1], "area": [5000.0]}],
    )
    assert given_area["map_medium"] == pytest.approx(1.0) and given_area["map_small"] == -1


@pytest.mark.parametrize("seed", range(4))
def test_f1_matches_hand_written_reference(seed):
    preds, refs = random_detection_case(seed, n_img=10)
    ours = compute_detection_map(preds, refs)
    assert ours["f1_50"] == pytest.approx(hand_f1(preds, refs, 0.5))
    assert ours["f1_75"] == pytest.approx(hand_f1(preds, refs, 0.75))


@pytest.mark.parametrize(
    ("pred", "ref", "kwargs", "match"),
    [
        (
            {"boxes": [[0, 0, 1, 1]], "scores": [float("nan")], "labels": [0]},
            {"boxes": [], "labels": []},
            {},
            "sample 0: prediction scores contain NaN",
        ),
        (
            {"boxes": [[0, 0, 1, 1]], "labels": [0]},
            {"boxes": [], "labels": []},
            {},
            "sample 0: prediction needs keys",
        ),
        (
            {"boxes": [[0, 0, 1, 1], [0, 0, 2, 2]], "scores": [1, 1], "labels": [0]},
            {"boxes": [], "labels": []},
            {},
            "sample 0: prediction has 2 boxes but 1 labels",
        ),
        (
            {"boxes": [], "scores": [], "labels": []},
            {"boxes": [], "labels": []},
            {"box_format": "ltrb"},
            "box_format='ltrb'",
        ),
    ],
)
def test_bad_input(pred, ref, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compute_detection_map([pred], [ref], **kwargs)
    with pytest.raises(ValueError, match="empty"):
        compute_detection_map([], [])

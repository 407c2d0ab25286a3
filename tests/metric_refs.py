"""Independent references for the metric tests: pycocotools and MONAI runners, random case generators."""

from __future__ import annotations

import contextlib
import io

import numpy as np

from neurotrain_hf.metrics.detection import SUMMARY_KEYS as COCO_KEYS


def random_detection_case(seed, n_img=20, n_cls=5, max_gt=6, max_dt=15, crowd=True, empty_images=True):
    """Boxes on a half-pixel grid (exact in any format), score ties, crowds, images without boxes."""
    rng = np.random.default_rng(seed)
    preds, refs = [], []
    for i in range(n_img):
        g = 0 if (empty_images and i == 0) else int(rng.integers(0, max_gt + 1))
        gxy = np.round(rng.uniform(0, 200, (g, 2)) * 2) / 2
        gwh = np.round(rng.uniform(2, 150, (g, 2)) * 2) / 2
        gl = rng.integers(0, n_cls, g)
        ref = {"boxes": np.c_[gxy, gxy + gwh].reshape(-1, 4), "labels": gl}
        if crowd:
            ref["iscrowd"] = (rng.random(g) < 0.1).astype(int)
        d = 0 if (empty_images and i == 1) else int(rng.integers(0, max_dt + 1))
        dxy = np.round(rng.uniform(0, 200, (d, 2)) * 2) / 2
        dwh = np.round(rng.uniform(2, 150, (d, 2)) * 2) / 2
        dl = rng.integers(0, n_cls + 1, d)  # class n_cls never appears in the references
        for j in range(min(d, g)):
            if rng.random() < 0.7:
                dxy[j] = gxy[j] + np.round(rng.normal(0, 4, 2) * 2) / 2
                dwh[j] = np.maximum(gwh[j] + np.round(rng.normal(0, 4, 2) * 2) / 2, 1)
                dl[j] = gl[j]
        preds.append(
            {
                "boxes": np.c_[dxy, dxy + dwh].reshape(-1, 4),
                "scores": np.round(rng.random(d), 2),
                "labels": dl,
            }
        )
        refs.append(ref)
    return preds, refs


def boxes_to_masks(items, height=64, width=72):
    out = []
    for item in items:
        n = len(item["labels"])
        masks = np.zeros((n, height, width), bool)
        for j, (x1, y1, x2, y2) in enumerate(np.asarray(item["boxes"]).reshape(-1, 4) / 3.5):
            masks[j, int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
            masks[j, int(y1) :: 3, int(x1) :: 5] = False
        new = {k: v for k, v in item.items() if k != "boxes"}
        new["masks"] = masks
        out.append(new)
    return out


def pycocotools_stats(preds, refs, iou_type="bbox", max_dets=(1, 10, 100), iou_thrs=None, per_class=False):
    """COCOeval stats (and optionally per-class AP) for our input format (xyxy boxes or masks)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(mask):
        encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        encoded["counts"] = encoded["counts"].decode()
        return encoded

    cats = sorted(set(np.concatenate([r["labels"] for r in refs] + [p["labels"] for p in preds]).tolist()))
    gt = {
        "images": [{"id": i + 1, "width": 256, "height": 256} for i in range(len(refs))],
        "categories": [{"id": int(c) + 1} for c in cats],
        "annotations": [],
    }
    for i, r in enumerate(refs):
        crowd = r.get("iscrowd", np.zeros(len(r["labels"])))
        for j in range(len(r["labels"])):
            ann = {
                "id": len(gt["annotations"]) + 1,
                "image_id": i + 1,
                "category_id": int(r["labels"][j]) + 1,
                "iscrowd": int(crowd[j]),
            }
            if iou_type == "bbox":
                x1, y1, x2, y2 = r["boxes"][j]
                ann["bbox"], ann["area"] = [x1, y1, x2 - x1, y2 - y1], (x2 - x1) * (y2 - y1)
            else:
                ann["segmentation"], ann["area"] = rle(r["masks"][j]), float(r["masks"][j].sum())
            gt["annotations"].append(ann)
    dts = []
    for i, p in enumerate(preds):
        for j in range(len(p["labels"])):
            det = {"image_id": i + 1, "category_id": int(p["labels"][j]) + 1, "score": float(p["scores"][j])}
            if iou_type == "bbox":
                x1, y1, x2, y2 = p["boxes"][j]
                det["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:
                det["segmentation"] = rle(p["masks"][j])
            dts.append(det)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dts)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.maxDets = list(max_dets)
        if iou_thrs is not None:
            ev.params.iouThrs = np.asarray(iou_thrs)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = dict(zip(COCO_KEYS, ev.stats.tolist()))
    stats["precision"], stats["recall"] = ev.eval["precision"], ev.eval["recall"]
    if per_class:
        prec = ev.eval["precision"][:, :, :, 0, -1]
        stats["map_per_class"] = [
            float(np.mean(p[p > -1])) if (p > -1).any() else -1.0 for p in np.moveaxis(prec, 2, 0)
        ]
    return stats


def blobs(shape, num_labels, seed):
    """Smooth random label maps (realistic boundaries)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.normal(size=(num_labels, *shape)), 3, axes=range(1, len(shape) + 1)).argmax(0)


def monai_onehot(maps, num_labels):
    import torch
    from monai.networks.utils import one_hot

    return one_hot(torch.as_tensor(np.stack(maps))[:, None], num_labels)


def blob_pair(shape, num_labels, seed, noise=0.3):
    """(prediction, reference) label maps: the prediction is the reference's field plus smooth noise,
    so the two boundaries mostly run close together, as a trained model's do."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    axes = range(1, len(shape) + 1)
    field = gaussian_filter(rng.normal(size=(num_labels, *shape)), 6, axes=axes)
    field /= field.std()
    jitter = gaussian_filter(rng.normal(size=(num_labels, *shape)), 3, axes=axes)
    jitter /= jitter.std()
    return (field + noise * jitter).argmax(0), field.argmax(0)

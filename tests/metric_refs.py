"""Independent references for the metric tests: pycocotools, MONAI, scikit-learn and hand-written loops,
random case generators. Nothing here computes through neurotrain_hf (only its key names are read)."""

from __future__ import annotations

import contextlib
import io
import warnings

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


def nanmean(a, axis=None):
    """np.nanmean without the all-NaN warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.nanmean(a, axis=axis)


def monai_overlap(kind, preds, refs, num_labels):
    """MONAI compute_dice / compute_iou (classes 1.., ignore_empty): per-class nanmean over images, mean."""
    from monai.metrics import compute_dice, compute_iou

    fn = compute_dice if kind == "dice" else compute_iou
    p, r = monai_onehot(preds, num_labels), monai_onehot(refs, num_labels)
    per_class = nanmean(fn(p, r, include_background=False, ignore_empty=True).numpy(), axis=0)
    return {f"mean_{kind}": float(nanmean(per_class)), f"per_class_{kind}": [np.nan, *per_class]}


def monai_nsd(preds, refs, num_labels, tolerance, spacing):
    """MONAI compute_surface_dice (classes 1..): per-class nanmean over images, then their mean."""
    from monai.metrics import compute_surface_dice

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_image = compute_surface_dice(
            monai_onehot(preds, num_labels),
            monai_onehot(refs, num_labels),
            [tolerance] * (num_labels - 1),
            spacing=list(spacing),
        ).numpy()
    per_class = nanmean(per_image, axis=0)
    return {"mean_nsd": float(nanmean(per_class)), "per_class_nsd": [np.nan, *per_class]}


def xyxy_iou(a, b) -> float:
    """IoU of two (x1, y1, x2, y2) boxes, written out."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = w * h if w > 0 and h > 0 else 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def hand_f1(preds, refs, thr, score_threshold=0.5):
    """The original framework's detection mF1 with plain loops: per image and class, detections scoring at
    least ``score_threshold`` (best first) take the unused non-crowd reference of highest IoU (ties: the
    later one) when it reaches ``thr``; F1 per class over all images, averaged over referenced classes."""
    stats = {}
    for p, r in zip(preds, refs):
        crowd = np.asarray(r.get("iscrowd", np.zeros(len(r["labels"]))), bool)
        for c in set(np.r_[p["labels"], r["labels"]].tolist()):
            d = [
                i
                for i in np.argsort(-np.asarray(p["scores"]), kind="mergesort")
                if p["labels"][i] == c and p["scores"][i] >= score_threshold
            ]
            g = [j for j in range(len(r["labels"])) if r["labels"][j] == c and not crowd[j]]
            used, tp = set(), 0
            for i in d:
                best, best_j = -1.0, None
                for j in g:
                    iou = xyxy_iou(p["boxes"][i], r["boxes"][j])
                    if j not in used and iou >= best:
                        best, best_j = iou, j
                if best_j is not None and best >= thr:
                    used.add(best_j)
                    tp += 1
            s = stats.setdefault(c, [0, 0, 0])
            s[0] += tp
            s[1] += len(d) - tp
            s[2] += len(g) - tp
    per_class = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in stats.values() if tp + fn > 0]
    return float(np.mean(per_class))


def hand_retrieval(sims, owner, k_values):
    """CLIP recall@k with Python's stable sort (ties: lower index first), loop by loop."""
    sims, owner = np.asarray(sims, float), [int(o) for o in owner]

    def ranking(scores):
        return sorted(range(len(scores)), key=lambda j: -scores[j])

    t2i = [ranking(row).index(owner[i]) for i, row in enumerate(sims)]
    i2t = [
        min(ranking(sims[:, img]).index(t) for t in range(len(owner)) if owner[t] == img)
        for img in sorted(set(owner))
    ]
    out = {}
    for k in k_values:
        out[f"text_to_image_recall@{k}"] = sum(r < k for r in t2i) / len(t2i)
        out[f"image_to_text_recall@{k}"] = sum(r < k for r in i2t) / len(i2t)
    out["mean_recall"] = sum(out.values()) / len(out)
    out["clip_accuracy"] = (sum(r < 1 for r in t2i) / len(t2i) + sum(r < 1 for r in i2t) / len(i2t)) / 2
    out["mean_matched_similarity"] = sum(sims[i, o] for i, o in enumerate(owner)) / len(owner)
    return out


def hand_bleu(preds, refs, max_order=4):
    """Corpus BLEU (Papineni et al.) for whitespace-tokenised text: clipped n-gram counts, closest
    reference length (ties: the shorter), brevity penalty, sacrebleu's 'exp' smoothing; BLEU-1..4."""
    from collections import Counter

    def grams(tokens, n):
        return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))

    correct, totals, sys_len, ref_len = [0] * max_order, [0] * max_order, 0, 0
    for pred, ref_list in zip(preds, refs):
        hyp, toks = pred.split(), [r.split() for r in ref_list]
        sys_len += len(hyp)
        ref_len += min((abs(len(t) - len(hyp)), len(t)) for t in toks)[1]
        for n in range(1, max_order + 1):
            most = Counter()
            for t in toks:
                most |= grams(t, n)
            correct[n - 1] += sum(min(c, most[g]) for g, c in grams(hyp, n).items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    precisions, halving = [], 1.0
    for c, t in zip(correct, totals):
        if c == 0:
            halving *= 2
        precisions.append(c / t if c else 1 / (halving * t))
    bp = 1.0 if sys_len >= ref_len else float(np.exp(1 - ref_len / sys_len))
    out = {f"bleu_{n}": bp * float(np.exp(np.mean(np.log(precisions[:n])))) for n in range(1, 5)}
    out.update(
        bleu=out[f"bleu_{max_order}"],
        precisions=precisions,
        brevity_penalty=bp,
        length_ratio=sys_len / ref_len,
        translation_length=sys_len,
        reference_length=ref_len,
    )
    return out


def sklearn_classification(probs, refs, average, top_k):
    """Accuracy, precision/recall/F1, one-vs-rest AUC and top-k accuracy from scikit-learn."""
    from sklearn.metrics import (
        accuracy_score,
        precision_recall_fscore_support,
        roc_auc_score,
        top_k_accuracy_score,
    )

    labels = np.arange(probs.shape[1])
    pred = probs.argmax(axis=1)
    p, r, f, _ = precision_recall_fscore_support(refs, pred, average=average, zero_division=0)
    out = {
        "accuracy": accuracy_score(refs, pred),
        "precision": p,
        "recall": r,
        "f1": f,
        "auc": roc_auc_score(refs, probs, multi_class="ovr", average=average, labels=labels),
    }
    out.update({f"top_k_accuracy@{k}": top_k_accuracy_score(refs, probs, k=k, labels=labels) for k in top_k})
    return out


def hand_threshold_rows(probs, refs, thresholds):
    """Per threshold t (positive when p >= t): the confusion-count metrics, written out."""
    rows = []
    for t in thresholds:
        tp = fp = fn = tn = 0
        for p, y in zip(probs, refs):
            if p >= t:
                tp, fp = tp + (y == 1), fp + (y == 0)
            else:
                fn, tn = fn + (y == 1), tn + (y == 0)
        rows.append(
            {
                "threshold": t,
                "precision": tp / (tp + fp) if tp + fp else 0.0,
                "recall": tp / (tp + fn) if tp + fn else 0.0,
                "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
                "accuracy": (tp + tn) / (tp + tn + fp + fn),
                "iou": tp / (tp + fp + fn) if tp + fp + fn else 0.0,
                "specificity": tn / (tn + fp) if tn + fp else 0.0,
            }
        )
    return rows


def soft_cldice_loss(prob, target, iters=3, smooth=1.0):
    """1 - soft clDice per (H, W) sample (Shit et al. 2021, Alg. 1: soft skeleton by iterated min/max
    pooling), written with scipy filters: Tprec = (|S(P)·L| + s) / (|S(P)| + s), Tsens likewise,
    clDice = 2·Tprec·Tsens / (Tprec + Tsens)."""
    from scipy.ndimage import maximum_filter, minimum_filter

    def erode(x):  # min over the 4-neighbour cross; "nearest" = outside pixels never win a min/max
        return np.minimum(
            minimum_filter(x, (3, 1), mode="nearest"), minimum_filter(x, (1, 3), mode="nearest")
        )

    def opened(x):
        return maximum_filter(erode(x), 3, mode="nearest")

    def skeleton(x):
        skel = np.maximum(x - opened(x), 0)
        for _ in range(iters):
            x = erode(x)
            delta = np.maximum(x - opened(x), 0)
            skel = skel + np.maximum(delta - skel * delta, 0)
        return skel

    out = []
    for p, t in zip(np.asarray(prob, np.float64), np.asarray(target, np.float64)):
        sp, st = skeleton(p), skeleton(t)
        tprec = ((sp * t).sum() + smooth) / (sp.sum() + smooth)
        tsens = ((st * p).sum() + smooth) / (st.sum() + smooth)
        out.append(1 - 2 * tprec * tsens / (tprec + tsens))
    return np.array(out)


def random_features(seed, n_gen=60, n_real=60, dim=6):
    """Generated and real feature rows: correlated Gaussians with different means and covariances."""
    rng = np.random.default_rng(seed)
    gen = rng.normal(size=(n_gen, dim)) @ rng.normal(size=(dim, dim)) + rng.normal(size=dim)
    real = rng.normal(size=(n_real, dim)) * rng.uniform(0.5, 2, dim) + 0.3
    return gen, real


def _identity_features(dim):
    """A torchmetrics feature extractor that returns its input (FID/KID fed feature vectors)."""
    import torch

    class Identity(torch.nn.Module):
        num_features = dim

        def forward(self, x):
            return x

    return Identity()


def torchmetrics_fid(gen, real) -> float:
    """torchmetrics ``FrechetInceptionDistance`` on feature rows (float64 in, float64 out)."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_identity_features(gen.shape[1]))
    metric.update(torch.as_tensor(gen, dtype=torch.float64), real=False)
    metric.update(torch.as_tensor(real, dtype=torch.float64), real=True)
    return float(metric.compute())


def torchmetrics_kid(gen, real) -> tuple[float, float]:
    """torchmetrics ``KernelInceptionDistance`` with one subset of every sample (equal counts needed)."""
    import torch
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():  # "will save all extracted features in buffer"
        warnings.simplefilter("ignore")
        metric = KernelInceptionDistance(
            feature=_identity_features(gen.shape[1]), subsets=1, subset_size=len(gen)
        )
    metric.update(torch.as_tensor(gen, dtype=torch.float64), real=False)
    metric.update(torch.as_tensor(real, dtype=torch.float64), real=True)
    mean, std = metric.compute()
    return float(mean), float(std)


def hand_mmd(x, y, degree=3):
    """Unbiased MMD^2 with the kernel (x.y / d + 1)^degree, written as the double sums of its definition."""
    m, n, d = len(x), len(y), x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1) ** degree

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy

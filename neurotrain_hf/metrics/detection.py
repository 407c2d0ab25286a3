"""COCO-style detection metrics (boxes or instance masks), equal to pycocotools ``COCOeval`` and faster.

``DetectionAccumulator.update`` matches each batch of images at once: detections of every (image,
category) group are visited rank by rank, and each step is vectorised over all groups of a similar
size, all area ranges and all IoU thresholds, with pycocotools' exact greedy rule (prefer unmatched
non-ignored references, highest IoU, ties to the later one; crowd references match repeatedly with
IoU = intersection / detection area). State kept per detection: score, match and ignore flags.
``compute`` then accumulates precision/recall with COCO's 101-point interpolation and summarises
``map``, ``map_50``, ``map_75``, ``map_{small,medium,large}``, ``mar_<k>``, ``mar_{small,medium,large}``
(-1 where COCO reports -1), plus ``f1_50``/``f1_75`` (greedy matching of detections scoring at least
``score_threshold``, F1 per class averaged over classes present in the references).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .common import to_numpy

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
COCO_IOUS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
SUMMARY_KEYS = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
"""COCOeval's 12 summary statistics, in its order (with the default max_detection_thresholds)."""
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


def to_xywh(boxes: np.ndarray, box_format: str) -> np.ndarray:
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format={box_format!r}: expected one of {', '.join(BOX_FORMATS)}")
    b = boxes.astype(np.float64, copy=True)
    if box_format == "xyxy":
        b[:, 2:] -= b[:, :2]
    elif box_format == "cxcywh":
        b[:, :2] -= b[:, 2:] / 2
    return b


def box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools ``bbIou`` for xywh boxes: (..., D, 4) x (..., G, 4) -> (..., D, G)."""
    dx1, dy1 = dt[..., :, None, 0], dt[..., :, None, 1]
    dx2, dy2 = dx1 + dt[..., :, None, 2], dy1 + dt[..., :, None, 3]
    gx1, gy1 = gt[..., None, :, 0], gt[..., None, :, 1]
    gx2, gy2 = gx1 + gt[..., None, :, 2], gy1 + gt[..., None, :, 3]
    w = np.minimum(dx2, gx2) - np.maximum(dx1, gx1)
    h = np.minimum(dy2, gy2) - np.maximum(dy1, gy1)
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    da = (dt[..., 2] * dt[..., 3])[..., :, None]
    ga = (gt[..., 2] * gt[..., 3])[..., None, :]
    union = np.where(crowd[..., None, :], da, da + ga - inter)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def mask_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of flattened binary masks (D, P) x (G, P), crowd references as pycocotools does."""
    inter = dt.astype(np.float32) @ gt.astype(np.float32).T  # exact integer counts below 2**24 pixels
    da, ga = dt.sum(axis=1, dtype=np.float64)[:, None], gt.sum(axis=1, dtype=np.float64)[None, :]
    inter = inter.astype(np.float64)
    union = np.where(crowd[None, :], da, da + ga - inter)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


class DetectionAccumulator:
    """Streaming COCO evaluation; ``iou_type`` is ``bbox`` (boxes) or ``segm`` (``masks``)."""

    STATE = ("images", "_dt", "_gt", "_f1_groups")  # summed/extended across processes

    def __init__(
        self,
        iou_type: str = "bbox",
        box_format: str = "xyxy",
        iou_thresholds: Sequence[float] | None = None,
        max_detection_thresholds: Sequence[int] = (1, 10, 100),
        class_metrics: bool = False,
        score_threshold: float = 0.5,
    ) -> None:
        if iou_type not in ("bbox", "segm"):
            raise ValueError(f"iou_type={iou_type!r}: expected 'bbox' or 'segm'")
        if box_format not in BOX_FORMATS:
            raise ValueError(f"box_format={box_format!r}: expected one of {', '.join(BOX_FORMATS)}")
        self.iou_type, self.box_format = iou_type, box_format
        self.iou_thrs = (
            COCO_IOUS.copy() if iou_thresholds is None else np.asarray(iou_thresholds, dtype=np.float64)
        )
        self.max_dets = sorted(int(m) for m in max_detection_thresholds)
        self.class_metrics, self.score_threshold = class_metrics, float(score_threshold)
        self.areas = np.array(list(AREA_RANGES.values()))
        self.reset()

    def reset(self) -> None:
        self.images = 0
        self._dt: list[dict[str, np.ndarray]] = []  # per batch: per-detection results
        self._gt: list[dict[str, np.ndarray]] = []  # per batch: per-reference category/ignore flags
        self._f1_groups: list[dict[str, np.ndarray]] = []  # per batch: per-group F1 counts

    # --- input ------------------------------------------------------------------------------------
    def _parse(self, item: dict, index: int, is_pred: bool) -> dict[str, np.ndarray]:
        what = "prediction" if is_pred else "reference"
        if not isinstance(item, dict):
            raise ValueError(f"sample {index}: {what} must be a dict, got {type(item).__name__}")
        key = "boxes" if self.iou_type == "bbox" else "masks"
        if key not in item or "labels" not in item or (is_pred and "scores" not in item):
            need = [key, "labels"] + (["scores"] if is_pred else [])
            raise ValueError(f"sample {index}: {what} needs keys {need}, got {sorted(item)}")
        labels = to_numpy(item["labels"], "labels", index).reshape(-1).astype(np.int64)
        n = len(labels)
        out: dict[str, np.ndarray] = {"labels": labels}
        if self.iou_type == "bbox":
            boxes = (
                to_numpy(item["boxes"], "boxes", index).astype(np.float64).reshape(-1, 4)
                if n
                else np.zeros((0, 4))
            )
            if len(boxes) != n:
                raise ValueError(f"sample {index}: {what} has {len(boxes)} boxes but {n} labels")
            out["geom"] = to_xywh(boxes, self.box_format)
            area = out["geom"][:, 2] * out["geom"][:, 3]
        else:
            masks = to_numpy(item["masks"], "masks", index).astype(bool)
            masks = (
                masks.reshape(len(masks), int(np.prod(masks.shape[1:])))
                if masks.ndim >= 2
                else masks.reshape(0, 0)
            )
            if len(masks) != n:
                raise ValueError(f"sample {index}: {what} has {len(masks)} masks but {n} labels")
            out["geom"] = masks
            area = masks.sum(axis=1).astype(np.float64)
        if is_pred:
            scores = to_numpy(item["scores"], "scores", index).reshape(-1).astype(np.float64)
            if len(scores) != n:
                raise ValueError(f"sample {index}: prediction has {len(scores)} scores but {n} labels")
            if not np.isfinite(scores).all():
                raise ValueError(f"sample {index}: prediction scores contain NaN or inf")
            out["scores"] = scores
        else:
            crowd = np.asarray(item.get("iscrowd", np.zeros(n)), dtype=bool).reshape(-1)
            out["crowd"] = crowd if len(crowd) == n else np.zeros(n, bool)
            if "area" in item and item["area"] is not None and len(item["area"]) == n:
                area = to_numpy(item["area"], "area", index).astype(np.float64).reshape(-1)
        out["area"] = area
        return out

    # --- matching ---------------------------------------------------------------------------------
    def update(self, predictions: Sequence[dict], references: Sequence[dict]) -> None:
        """Match a batch of images (one dict per image in each list)."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        if len(predictions) == 0:
            return
        parsed = [
            (self._parse(p, self.images + i, True), self._parse(r, self.images + i, False))
            for i, (p, r) in enumerate(zip(predictions, references))
        ]
        dt = _stack([p for p, _ in parsed], self.images)
        gt = _stack([r for _, r in parsed], self.images)
        keys = np.stack([np.r_[dt["img"], gt["img"]], np.r_[dt["labels"], gt["labels"]]], axis=1)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        dt["group"], gt["group"] = inverse[: len(dt["img"])], inverse[len(dt["img"]) :]
        # detections: by group, then score (descending), then input order; keep the top max_dets[-1]
        order = np.lexsort((np.arange(len(dt["group"])), -dt["scores"], dt["group"]))
        dt = {k: v[order] for k, v in dt.items()}
        dt["rank"] = _rank_in_group(dt["group"])
        keep = dt["rank"] < self.max_dets[-1]
        dt = {k: v[keep] for k, v in dt.items()}
        order = np.lexsort((np.arange(len(gt["group"])), gt["group"]))
        gt = {k: v[order] for k, v in gt.items()}
        gt["rank"] = _rank_in_group(gt["group"])
        gt["ignore"] = self._area_flags(gt["area"]) | gt["crowd"][None, :]  # (A, G)
        self._gt.append({"cat": gt["labels"], "ignore": gt["ignore"]})
        n_groups = len(uniq)
        nd = np.bincount(dt["group"], minlength=n_groups)
        ng = np.bincount(gt["group"], minlength=n_groups)
        buckets = np.where(ng == 0, 1, 2 ** np.ceil(np.log2(np.maximum(ng, 1))).astype(int))
        tp = np.zeros((len(dt["group"]), len(self.areas), len(self.iou_thrs)), bool)
        ign = np.zeros_like(tp)
        f1_tp = np.zeros((n_groups, 2))
        for bucket in np.unique(buckets):
            groups = np.flatnonzero(buckets == bucket)
            self._match_bucket(groups, int(bucket), dt, gt, nd, tp, ign, f1_tp)
        ign |= ~tp & self._area_flags(dt["area"]).T[:, :, None]
        self._dt.append(
            {
                "img": dt["img"],
                "cat": dt["labels"],
                "rank": dt["rank"],
                "score": dt["scores"],
                "tp": np.moveaxis(tp, 0, -1),
                "ign": np.moveaxis(ign, 0, -1),
            }
        )
        f1_dt = np.bincount(dt["group"], weights=dt["scores"] >= self.score_threshold, minlength=n_groups)
        f1_gt = np.bincount(gt["group"], weights=~gt["crowd"], minlength=n_groups)
        self._f1_groups.append({"cat": uniq[:, 1], "tp": f1_tp, "dt": f1_dt, "gt": f1_gt})
        self.images += len(predictions)

    def _area_flags(self, area: np.ndarray) -> np.ndarray:
        """(A, N): area outside each area range."""
        return (area[None, :] < self.areas[:, :1]) | (area[None, :] > self.areas[:, 1:])

    def _match_bucket(self, groups, gmax, dt, gt, nd, tp, ign, f1_tp) -> None:
        """Greedy COCO matching of all groups in one size bucket, rank by rank."""
        n, A, T = len(groups), len(self.areas), len(self.iou_thrs)
        row = np.full(len(nd), -1)
        row[groups] = np.arange(n)
        dmax = int(nd[groups].max())
        if dmax == 0:
            return
        g_sel = np.flatnonzero(row[gt["group"]] >= 0)
        g_row, g_col = row[gt["group"][g_sel]], gt["rank"][g_sel]
        valid = np.zeros((n, gmax), bool)
        crowd = np.zeros((n, gmax), bool)
        g_ign = np.ones((n, A, gmax), bool)
        valid[g_row, g_col] = True
        crowd[g_row, g_col] = gt["crowd"][g_sel]
        g_ign[g_row, :, g_col] = gt["ignore"][:, g_sel].T
        d_sel = np.flatnonzero(row[dt["group"]] >= 0)
        d_row, d_col = row[dt["group"][d_sel]], dt["rank"][d_sel]
        d_index = np.full((n, dmax), -1)
        d_index[d_row, d_col] = d_sel
        ious = self._bucket_ious(dt, gt, d_row, d_col, d_sel, g_row, g_col, g_sel, n, dmax, gmax, crowd)
        thr = np.minimum(self.iou_thrs, 1 - 1e-10)[None, None, :, None]
        f1_thr = np.array([0.5, 0.75])[None, :, None]
        gtm = np.zeros((n, A, T, gmax), bool)
        gtm_f1 = np.zeros((n, 2, gmax), bool)
        order = np.argsort(-nd[groups], kind="stable")
        counts = nd[groups][order]
        for d in range(dmax):
            act = order[: int((counts > d).sum())]
            iou = ious[act, d]  # (m, G)
            idx = d_index[act, d]
            iou4 = iou[:, None, None, :]
            elig = (iou4 >= thr) & (~gtm[act] | crowd[act][:, None, None, :]) & valid[act][:, None, None, :]
            gi = g_ign[act][:, :, None, :]
            pick = elig & ~gi
            cand = np.where(pick.any(-1, keepdims=True), pick, elig & gi)
            last = (
                gmax - 1 - np.argmax(np.where(cand, iou4, -1.0)[..., ::-1], axis=-1)
            )  # ties: later reference
            hit = cand.any(-1)
            r = np.nonzero(hit)
            gtm[act[r[0]], r[1], r[2], last[r]] = True
            tp[idx] = hit
            ign[idx] = (
                hit
                & np.take_along_axis(np.broadcast_to(gi, hit.shape + (gmax,)), last[..., None], -1)[..., 0]
            )
            # F1 at IoU 0.5 / 0.75: detections above score_threshold, crowd references left out
            strong = (dt["scores"][idx] >= self.score_threshold)[:, None, None]
            elig_f = (
                (iou[:, None, :] >= f1_thr) & ~gtm_f1[act] & (valid[act] & ~crowd[act])[:, None, :] & strong
            )
            last_f = gmax - 1 - np.argmax(np.where(elig_f, iou[:, None, :], -1.0)[..., ::-1], axis=-1)
            hit_f = elig_f.any(-1)
            r = np.nonzero(hit_f)
            gtm_f1[act[r[0]], r[1], last_f[r]] = True
            f1_tp[groups[act]] += hit_f

    def _bucket_ious(
        self, dt, gt, d_row, d_col, d_sel, g_row, g_col, g_sel, n, dmax, gmax, crowd
    ) -> np.ndarray:
        """(n, dmax, gmax) IoUs of each group's detections with its references (0 where padded)."""
        if self.iou_type == "bbox":
            dbox = np.zeros((n, dmax, 4))
            gbox = np.zeros((n, gmax, 4))
            dbox[d_row, d_col] = dt["geom"][d_sel]
            gbox[g_row, g_col] = gt["geom"][g_sel]
            return box_iou(dbox, gbox, crowd)
        out = np.zeros((n, dmax, gmax))
        for r in np.unique(d_row):
            ds, gs = d_sel[d_row == r], g_sel[g_row == r]
            if len(gs):
                dmask, gmask = np.stack(list(dt["geom"][ds])), np.stack(list(gt["geom"][gs]))
                if dmask.shape[1] != gmask.shape[1]:
                    raise ValueError(
                        f"image {int(dt['img'][ds[0]])}: prediction and reference masks differ in size"
                    )
                out[r, : len(ds), : len(gs)] = mask_iou(dmask, gmask, gt["crowd"][gs])
        return out

    def _f1_score(self, thr_index: int) -> float:
        cat = np.concatenate([b["cat"] for b in self._f1_groups])
        tp = np.concatenate([b["tp"][:, thr_index] for b in self._f1_groups])
        ndt = np.concatenate([b["dt"] for b in self._f1_groups])
        ngt = np.concatenate([b["gt"] for b in self._f1_groups])
        scores = []
        for c in np.unique(cat):
            sel = cat == c
            t, d, g = tp[sel].sum(), ndt[sel].sum(), ngt[sel].sum()
            if g > 0:
                scores.append(2 * t / (d + g))
        return float(np.mean(scores)) if scores else -1.0

    # --- accumulate and summarise -----------------------------------------------------------------
    def compute(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """All outputs, or only ``names`` of them."""
        if self.images == 0:
            raise ValueError("no samples were added: predictions is empty")
        gt_cat = np.concatenate([g["cat"] for g in self._gt])
        gt_ign = np.concatenate([g["ignore"] for g in self._gt], axis=1)
        dt = {k: np.concatenate([b[k] for b in self._dt], axis=-1) for k in self._dt[0]} if self._dt else None
        cats = np.union1d(gt_cat, dt["cat"] if dt is not None else [])
        T, R, K, A, M = len(self.iou_thrs), len(REC_THRS), len(cats), len(self.areas), len(self.max_dets)
        precision = -np.ones((T, R, K, A, M))
        recall = -np.ones((T, K, A, M))
        for k, cat in enumerate(cats):
            npig = (~gt_ign[:, gt_cat == cat]).sum(axis=1)  # (A,)
            sel = np.flatnonzero(dt["cat"] == cat) if dt is not None else np.zeros(0, int)
            for m, max_det in enumerate(self.max_dets):
                s = sel[dt["rank"][sel] < max_det] if len(sel) else sel
                if len(s):
                    s = s[np.lexsort((dt["rank"][s], dt["img"][s], -dt["score"][s]))]
                for a in range(A):
                    if npig[a] == 0:
                        continue
                    precision[:, :, k, a, m], recall[:, k, a, m] = self._pr_curve(dt, s, a, npig[a])
        out = self._summarize(precision, recall, cats)
        return {k: out[k] for k in names if k in out} if names is not None else out

    def _pr_curve(self, dt, s: np.ndarray, a: int, npig: int):
        T, R = len(self.iou_thrs), len(REC_THRS)
        if len(s) == 0:
            return np.zeros((T, R)), np.zeros(T)
        tp = dt["tp"][a][:, s]
        ign = dt["ign"][a][:, s]
        tps = np.cumsum(tp & ~ign, axis=1, dtype=np.float64)
        fps = np.cumsum(~tp & ~ign, axis=1, dtype=np.float64)
        rc = tps / npig
        pr = tps / (fps + tps + np.spacing(1))
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
        q = np.zeros((T, R))
        for t in range(T):
            inds = np.searchsorted(rc[t], REC_THRS, side="left")
            valid = inds < pr.shape[1]
            q[t, valid] = pr[t, inds[valid]]  # unreachable recall thresholds keep precision 0
        return q, rc[:, -1]

    def _summarize(self, precision: np.ndarray, recall: np.ndarray, cats: np.ndarray) -> dict[str, Any]:
        def mean(values: np.ndarray) -> float:
            values = values[values > -1]
            return float(values.mean()) if values.size else -1.0

        def at_iou(arr: np.ndarray, iou: float) -> np.ndarray:
            t = np.flatnonzero(np.isclose(self.iou_thrs, iou))
            return arr[t] if len(t) else np.full(1, -1.0)

        area_idx = {name: i for i, name in enumerate(AREA_RANGES)}
        last = len(self.max_dets) - 1
        out: dict[str, Any] = {
            "map": mean(precision[:, :, :, 0, last]),
            "map_50": mean(at_iou(precision, 0.5)[:, :, :, 0, last]),
            "map_75": mean(at_iou(precision, 0.75)[:, :, :, 0, last]),
        }
        for name in ("small", "medium", "large"):
            out[f"map_{name}"] = mean(precision[:, :, :, area_idx[name], last])
        for m, max_det in enumerate(self.max_dets):
            out[f"mar_{max_det}"] = mean(recall[:, :, 0, m])
        for name in ("small", "medium", "large"):
            out[f"mar_{name}"] = mean(recall[:, :, area_idx[name], last])
        out["f1_50"], out["f1_75"] = self._f1_score(0), self._f1_score(1)
        if self.class_metrics:
            out["classes"] = cats.tolist()
            out["map_per_class"] = [mean(precision[:, :, k, 0, last]) for k in range(len(cats))]
            out["mar_per_class"] = [mean(recall[:, k, 0, last]) for k in range(len(cats))]
        return out


def _stack(items: list[dict[str, np.ndarray]], first_image: int) -> dict[str, np.ndarray]:
    """Concatenate per-image arrays, adding the image index of each row."""
    out = {}
    for key in items[0]:
        if key == "geom" and items[0]["geom"].dtype == bool:  # masks: images may differ in size
            rows = [row for it in items for row in it["geom"]]
            out[key] = np.empty(len(rows), dtype=object)
            out[key][:] = rows
        else:
            out[key] = np.concatenate([it[key] for it in items])
    out["img"] = np.concatenate([np.full(len(it["labels"]), first_image + i) for i, it in enumerate(items)])
    return out


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """Position of each row within its run of equal (sorted) group ids."""
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    return np.arange(len(group)) - np.repeat(starts, np.diff(np.r_[starts, len(group)]))


def compute_detection_map(predictions, references, iou_type: str = "bbox", **kwargs) -> dict[str, Any]:
    acc = DetectionAccumulator(iou_type=iou_type, **kwargs)
    acc.update(predictions, references)
    return acc.compute()

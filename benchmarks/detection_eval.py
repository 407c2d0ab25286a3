"""Detection evaluation (COCO mAP) of N images: streaming DetectionAccumulator vs collect-then-compute.

Contenders, each in a fresh child process (``--child``) per (contender, N), as in ``eval_memory.py``:
  ours         ``DetectionAccumulator`` updated batch by batch (``--batch-size`` images), then ``compute()``;
  torchmetrics the transformers object-detection example's approach: every batch's predictions and
               targets are kept in lists (as its ``compute_metrics`` receives them from the Trainer's
               accumulation), turned into per-image dicts of ``torch.tensor`` at the end, then one
               ``MeanAveragePrecision(box_format="xyxy", class_metrics=False, backend="pycocotools")``
               ``update`` with everything and ``compute`` (the example keeps raw logits, larger still;
               here only the post-processed boxes/scores/labels are kept);
  pycocotools  the reference: the COCO ground-truth dict and results list built batch by batch, then
               ``COCOeval`` evaluate / accumulate / summarize.

Workload (deterministic; batch b is generated from seed (0, b), so the generator holds no all-image
state): images of 128-640 px per side, 0-8 reference boxes each with labels from 3-10 of ``--classes``
categories, sizes spanning COCO's small/medium/large; predictions are jittered references (85% found,
20% of those twice, 5% with a wrong label; scores 0.3-1) plus false positives (scores 0-0.7), at most
100 per image; boxes xyxy in pixels. Generating a batch is not timed; "time" is the metric work only.

The child imports what its contender needs, builds its metric, generates one batch, runs
``gc.collect()`` and ``malloc_trim``, reads its RSS (the baseline) and reports the peak RSS of the
evaluation above it (``PeakMeter``: the kernel's high-water mark, reset). Medians over ``--rounds``
alternating rounds; mAP values are deterministic.

    .venv/bin/python benchmarks/detection_eval.py            # N = 500 and 5000, 2 rounds
    .venv/bin/python benchmarks/detection_eval.py --quick    # N = 100 and 400, 1 round
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
# eval_memory sets the offline variables when imported (before anything reads them)
from eval_memory import MB, PeakMeter, rss_bytes, run_child, trim_heap  # noqa: E402

CONTENDERS = ("ours", "torchmetrics", "pycocotools")
KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")
KEYS += ("mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")
MAX_DETS = 100


# --- the workload ---------------------------------------------------------------------------------------
def make_batch(index: int, n_images: int, classes: int) -> tuple[list[dict], list[dict]]:
    """Predictions and references (per-image dicts of numpy arrays) of batch ``index``."""
    import numpy as np

    rng = np.random.default_rng([0, index])
    preds, refs = [], []
    for _ in range(n_images):
        w, h = rng.integers(128, 641, 2)
        subset = rng.choice(classes, size=rng.integers(min(3, classes), min(10, classes) + 1), replace=False)
        n_gt = int(rng.integers(0, 9))
        side = np.exp(rng.uniform(np.log(8), np.log(0.6 * min(w, h)), (n_gt, 2)))
        xy = rng.uniform(0, 1, (n_gt, 2)) * ([w, h] - side)
        gt = np.c_[xy, xy + side]
        labels = rng.choice(subset, n_gt)
        found = np.flatnonzero(rng.random(n_gt) < 0.85)
        found = np.r_[found, found[rng.random(len(found)) < 0.2]]  # duplicate detections
        size = np.c_[gt[found, 2:] - gt[found, :2], gt[found, 2:] - gt[found, :2]]
        tp = gt[found] + rng.normal(0, 0.08, (len(found), 4)) * size
        tp_labels = np.where(rng.random(len(found)) < 0.05, rng.choice(subset, len(found)), labels[found])
        n_fp = int(rng.integers(0, MAX_DETS - len(found) + 1))
        fp_side = np.exp(rng.uniform(np.log(8), np.log(0.6 * min(w, h)), (n_fp, 2)))
        fp_xy = rng.uniform(0, 1, (n_fp, 2)) * ([w, h] - fp_side)
        boxes = np.r_[tp, np.c_[fp_xy, fp_xy + fp_side]]
        boxes = np.clip(boxes, 0, [w, h, w, h])
        scores = np.r_[rng.uniform(0.3, 1.0, len(found)), rng.uniform(0.0, 0.7, n_fp)]
        preds.append({"boxes": boxes, "scores": scores, "labels": np.r_[tp_labels, rng.choice(subset, n_fp)]})
        refs.append({"boxes": gt, "labels": labels})
    return preds, refs


def batches(n: int, opts):
    for b, start in enumerate(range(0, n, opts.batch_size)):
        yield make_batch(b, min(opts.batch_size, n - start), opts.classes)


# --- the contenders: setup() before the baseline, then step(preds, refs) per batch and finish() -------
class Ours:
    def __init__(self, opts) -> None:
        from neurotrain_hf.metrics.detection import DetectionAccumulator

        self.acc = DetectionAccumulator(box_format="xyxy")

    def step(self, preds, refs) -> None:
        self.acc.update(preds, refs)

    def finish(self) -> dict:
        out = self.acc.compute()
        return {k: out[k] for k in KEYS}


class TorchMetrics:
    """The transformers object-detection example: lists of batches, one update and compute at the end."""

    def __init__(self, opts) -> None:
        import pycocotools.cocoeval  # noqa: F401  (torchmetrics imports it lazily in compute)
        from torchmetrics.detection import MeanAveragePrecision

        self.metric = MeanAveragePrecision(box_format="xyxy", class_metrics=False, backend="pycocotools")
        self.predictions: list[list[dict]] = []
        self.targets: list[list[dict]] = []

    def step(self, preds, refs) -> None:
        self.predictions.append(preds)  # what the Trainer accumulates (eval_do_concat_batches=False)
        self.targets.append(refs)

    def finish(self) -> dict:
        import torch

        post_preds, post_targets = [], []  # compute_metrics: per-image dicts of tensors
        for batch in self.targets:
            for t in batch:
                post_targets.append({"boxes": torch.tensor(t["boxes"]), "labels": torch.tensor(t["labels"])})
        for batch in self.predictions:
            for p in batch:
                post_preds.append({k: torch.tensor(p[k]) for k in ("boxes", "scores", "labels")})
        self.metric.update(post_preds, post_targets)
        with contextlib.redirect_stdout(io.StringIO()):
            out = self.metric.compute()
        return {k: float(out[k]) for k in KEYS}


class PyCocoTools:
    def __init__(self, opts) -> None:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        self.COCO, self.COCOeval = COCO, COCOeval
        cats = [{"id": c + 1} for c in range(opts.classes)]
        self.gt: dict = {"images": [], "categories": cats, "annotations": []}
        self.results: list[dict] = []

    def step(self, preds, refs) -> None:
        for p, r in zip(preds, refs):
            image_id = len(self.gt["images"]) + 1
            self.gt["images"].append({"id": image_id})
            for (x1, y1, x2, y2), c in zip(r["boxes"].tolist(), r["labels"].tolist()):
                ann = {"id": len(self.gt["annotations"]) + 1, "image_id": image_id, "category_id": c + 1}
                ann.update(bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1), iscrowd=0)
                self.gt["annotations"].append(ann)
            for (x1, y1, x2, y2), s, c in zip(
                p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()
            ):
                self.results.append(
                    {
                        "image_id": image_id,
                        "category_id": c + 1,
                        "score": s,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                    }
                )

    def finish(self) -> dict:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = self.COCO()
            coco.dataset = self.gt
            coco.createIndex()
            ev = self.COCOeval(coco, coco.loadRes(self.results), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return dict(zip(KEYS, map(float, ev.stats)))


CLASSES = {"ours": Ours, "torchmetrics": TorchMetrics, "pycocotools": PyCocoTools}


def child(name: str, n: int, opts) -> dict:
    import torch

    torch.set_num_threads(opts.threads)
    contender = CLASSES[name](opts)
    make_batch(0, opts.batch_size, opts.classes)  # warm up the generator before the baseline
    gc.collect()
    trim_heap()
    base = rss_bytes()
    seconds, detections, references = 0.0, 0, 0
    with PeakMeter() as meter:
        for preds, refs in batches(n, opts):  # generating a batch is not timed
            detections += sum(len(p["labels"]) for p in preds)
            references += sum(len(r["labels"]) for r in refs)
            start = time.perf_counter()
            contender.step(preds, refs)
            seconds += time.perf_counter() - start
        del preds, refs
        start = time.perf_counter()
        values = contender.finish()
        seconds += time.perf_counter() - start
    return {
        "name": name,
        "n": n,
        "seconds": seconds,
        "baseline_mb": base / MB,
        "growth_mb": (meter.peak - base) / MB,
        "method": meter.method,
        "detections": detections,
        "references": references,
        "values": values,
    }


# --- the parent -----------------------------------------------------------------------------------------
def measure(name: str, n: int, opts) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--size", str(n)]
    cmd += ["--batch-size", str(opts.batch_size), "--classes", str(opts.classes)]
    cmd += ["--threads", str(opts.threads)]
    return run_child(cmd, f"{name} @ {n}", opts)


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000], help="numbers of images")
    parser.add_argument("--batch-size", type=int, default=8, help="images per update")
    parser.add_argument("--classes", type=int, default=10, help="categories of the data set")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; medians are reported")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each child")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per child process")
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument(
        "--glibc-default", action="store_true", help="children keep glibc's default malloc thresholds"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: sizes 100 and 400, 1 round")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    if parser.parse_known_args(argv)[0].quick:  # smaller defaults; options given explicitly still win
        parser.set_defaults(sizes=[100, 400], rounds=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.child:
        print(json.dumps(child(opts.child, opts.size, opts)), flush=True)
        return 0
    runs: dict[tuple[str, int], list[dict]] = {(c, n): [] for c in opts.contenders for n in opts.sizes}
    for i in range(opts.rounds):
        for n in opts.sizes:
            for name in opts.contenders if i % 2 == 0 else opts.contenders[::-1]:
                res = measure(name, n, opts)
                runs[(name, n)].append(res)
                print(
                    f"round {i + 1}: {name:12s} n={n:<6d} {res['seconds']:7.2f} s  baseline "
                    f"{res['baseline_mb']:7.1f} MB  growth {res['growth_mb']:7.1f} MB  "
                    f"map {res['values']['map']:.6f}",
                    flush=True,
                )
    report(runs, opts)
    return 0


def report(runs: dict[tuple[str, int], list[dict]], opts) -> None:
    first = next(iter(runs.values()))[0]
    print(
        f"\nsynthetic detections, {opts.classes} categories, batch {opts.batch_size}, {opts.rounds} "
        f"round(s), peak RSS by {first['method']}, torch threads {opts.threads}; time = metric work only"
    )
    for n in opts.sizes:
        res = {c: runs[(c, n)] for c in opts.contenders}
        some = res[opts.contenders[0]][0]
        print(f"\nN = {n} images: {some['references']} references, {some['detections']} detections")
        print(
            f"{'contender':14s} {'time s':>9s} {'growth MB':>10s} {'map':>10s} {'map_50':>10s} {'map_75':>10s}"
        )
        t = {c: statistics.median(r["seconds"] for r in rs) for c, rs in res.items()}
        m = {c: statistics.median(r["growth_mb"] for r in rs) for c, rs in res.items()}
        v = {c: rs[0]["values"] for c, rs in res.items()}
        for c in res:
            print(
                f"{c:14s} {t[c]:9.3f} {m[c]:10.1f} {v[c]['map']:10.6f} {v[c]['map_50']:10.6f} "
                f"{v[c]['map_75']:10.6f}"
            )
        if "ours" in res and "torchmetrics" in res:
            mem = m["torchmetrics"] / m["ours"] if m["ours"] > 0 else float("nan")
            print(
                f"ratios torchmetrics/ours: time x{t['torchmetrics'] / t['ours']:.2f}, "
                f"memory x{mem:.2f} ({m['torchmetrics']:.1f} MB vs {m['ours']:.1f} MB)"
            )
        for a, b, tol in (
            ("ours", "pycocotools", 1e-6),
            ("torchmetrics", "pycocotools", None),
            ("ours", "torchmetrics", None),
        ):
            if a in res and b in res:
                diff = max(abs(v[a][k] - v[b][k]) for k in KEYS)
                main3 = max(abs(v[a][k] - v[b][k]) for k in ("map", "map_50", "map_75"))
                verdict = f"{'OK' if diff <= tol else 'MISMATCH'} (tol {tol:g})" if tol else "info"
                print(
                    f"agree {a} vs {b}: max |diff| map/map_50/map_75 {main3:.2e}, all 12 stats {diff:.2e}"
                    f"  {verdict}"
                )


if __name__ == "__main__":
    sys.exit(main())

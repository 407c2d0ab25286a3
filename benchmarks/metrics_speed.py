"""Metric speed against the references, side by side in one run (values must be identical).

Dice and NSD vs MONAI: 16 images of 512x512 and 4 volumes of 96^3 (4 labels; smooth random regions,
the prediction a noisy version of the reference, as a trained model's output is);
detection mAP vs pycocotools: 500 images, 100 detections each (COCOeval evaluate+accumulate+summarize);
BLEU vs sacrebleu: 10k sentence pairs (we call sacrebleu once and derive BLEU-1..3 from its statistics).

  python benchmarks/metrics_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.metric_refs import COCO_KEYS, blob_pair, monai_onehot, pycocotools_stats, random_detection_case  # noqa: E402


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def row(name: str, ours: float, ref: float, same: bool, target: str) -> None:
    print(
        f"{name:34s} ours {ours * 1000:9.1f} ms   reference {ref * 1000:9.1f} ms   speed-up x{ref / ours:6.2f}"
        f"   identical: {same}   target: {target}",
        flush=True,
    )


def bench_overlap_nsd(repeats: int) -> None:
    for label, shape, count in (("16 x 512^2", (512, 512), 16), ("4 x 96^3", (96, 96, 96), 4)):
        bench_segmentation_case(label, shape, count, repeats)


def bench_segmentation_case(label: str, shape: tuple[int, ...], count: int, repeats: int) -> None:
    from monai.metrics import compute_dice as monai_dice
    from monai.metrics import compute_surface_dice

    from neurotrain_hf.metrics.overlap import compute_dice
    from neurotrain_hf.metrics.surface import SurfaceDiceAccumulator

    c = 4
    pairs = [blob_pair(shape, c, i) for i in range(count)]
    preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
    p1, r1 = monai_onehot(preds, c), monai_onehot(refs, c)
    t_ours, ours = timed(lambda: compute_dice(preds, refs, c), repeats)
    t_ref, ref = timed(lambda: monai_dice(p1, r1, include_background=False, ignore_empty=True), repeats)
    t_ref_oh, _ = timed(
        lambda: monai_dice(monai_onehot(preds, c), monai_onehot(refs, c), include_background=False), repeats
    )
    same = np.allclose(ours["per_class_dice"][1:], np.nanmean(ref.numpy(), axis=0), atol=1e-6)
    row(f"Dice {label}", t_ours, t_ref, same, "no slower (one-hot given to MONAI)")
    row(f"Dice {label} (+one-hot)", t_ours, t_ref_oh, same, "no slower")
    tol, spacing = [1.0, 2.0, 3.0], [1.0] * len(shape)
    acc = SurfaceDiceAccumulator(c, tol, spacing)
    t_ours, ours = timed(lambda: np.stack([acc.per_image(p, r)[1:] for p, r in zip(preds, refs)]), repeats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ref, ref = timed(lambda: compute_surface_dice(p1, r1, tol, spacing=spacing).numpy(), repeats)
    row(f"NSD {label}", t_ours, t_ref, bool(np.allclose(ours, ref, atol=1e-6, equal_nan=True)), ">= 2x")


def bench_detection(repeats: int) -> None:
    from neurotrain_hf.metrics.detection import compute_detection_map

    preds, refs = random_detection_case(123, n_img=500, n_cls=20, max_gt=30, max_dt=100, empty_images=False)
    for p in preds:  # exactly 100 detections per image
        extra = 100 - len(p["labels"])
        if extra > 0:
            rng = np.random.default_rng(len(p["labels"]))
            xy = np.round(rng.uniform(0, 200, (extra, 2)) * 2) / 2
            p["boxes"] = np.r_[p["boxes"], np.c_[xy, xy + 20]]
            p["scores"] = np.r_[p["scores"], np.round(rng.random(extra), 2)]
            p["labels"] = np.r_[p["labels"], rng.integers(0, 20, extra)]
    t_ours, ours = timed(lambda: compute_detection_map(preds, refs), repeats)
    t_ref, ref = timed(lambda: pycocotools_stats(preds, refs), max(1, repeats - 1))
    same = all(abs(ours[k] - ref[k]) <= 1e-6 for k in COCO_KEYS)
    row("detection mAP 500 img x 100 det", t_ours, t_ref, same, ">= 3x")


def bench_bleu(repeats: int) -> None:
    import sacrebleu

    from neurotrain_hf.metrics.text import compute_bleu

    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(2000)]
    refs = [" ".join(rng.choice(vocab, rng.integers(5, 30))) for _ in range(10_000)]
    preds = [" ".join(w if rng.random() < 0.7 else rng.choice(vocab) for w in r.split()) for r in refs]
    t_ours, ours = timed(lambda: compute_bleu(preds, [[r] for r in refs])["bleu"], repeats)
    t_ref, ref = timed(lambda: sacrebleu.metrics.BLEU().corpus_score(preds, [refs]).score / 100, repeats)
    row("BLEU 10k pairs (+BLEU-1..3)", t_ours, t_ref, abs(ours - ref) < 1e-12, "identical values")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    bench_overlap_nsd(args.repeats)
    bench_detection(args.repeats)
    bench_bleu(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak host memory (RSS) of ``trainer.evaluate()``: plain transformers.Trainer vs NeuroTrainer.

Each (trainer, eval-set size) is measured in a fresh child process (``--child``), so one measurement's
peak cannot leak into the next. The child builds model and data, runs ``gc.collect()`` and
``malloc_trim``, reads its RSS (the baseline), resets the kernel's high-water mark
(``/proc/self/clear_refs``; where that is not possible a psutil thread samples RSS every millisecond
instead), runs ``evaluate()`` once and reports the high-water mark minus the baseline: the memory
evaluation itself added. Modules a row would import lazily inside its first evaluation (MONAI's Dice
loss) are imported before the baseline (``preload``). Both rows run on the CPU (``use_cpu``), otherwise with their defaults.

Rows (one function each, ``ROWS``):
  plain_trainer      transformers.Trainer with default settings (fp32, eval_accumulation_steps unset,
                     ``batch_eval_metrics`` off) and a ``compute_metrics`` taking accuracy from all gathered
                     logits, as users typically evaluate; the images come through a ``collate_fn`` that
                     scales and normalises them (hence ``remove_unused_columns=False``, as in the
                     transformers image-classification guide);
  neurotrainer       ClassificationTrainer built by ``neurotrain_hf.runner.build(config)``, metrics
                     accuracy and f1 (streamed per batch; nothing per sample is kept);
  seg_plain_trainer  segmentation reference: transformers.Trainer as above with the U-Net below (its own
                     BCE loss from ``labels``), a ``collate_fn`` that normalises the images and turns the
                     masks into long labels, and a ``compute_metrics`` taking pixel accuracy and Dice
                     from all gathered logit maps and label maps (how users typically evaluate);
  seg_neurotrainer   SegmentationTrainer built by ``runner.build(config)``: ``eval_mode = "full"``, the
                     default segmentation metrics (FOV accuracy .. MCC, AUC, best F1 from a 1,001-point
                     threshold sweep, mean Dice/IoU: counts only) and its dice+ce evaluation loss;
  seg3d_neurotrainer SegmentationTrainer on the 3D path, built by ``runner.build(config)`` from the 3D
                     default experiment (``recipes/configs/synthetic_3d.toml``: sliding-window
                     evaluation, ROI 32x32x16, overlap 0.25, the recipe's unet and metrics mean Dice,
                     NSD, HD95, per class; logits restored to each file's grid) on ``--vol-sizes``
                     validation volumes (default 5 and 50).

Workload (the choice, stated): synthetic in-memory 3x64x64 uint8 images (the same for both rows),
``simple_cnn`` (channels 16, 32) with a 1000-class head (ImageNet-sized), evaluation batch 8 for both
(transformers' default ``per_device_eval_batch_size``), on the CPU so that everything evaluation
allocates is host memory. With 1000 classes the logits are 4 KB per sample: the plain Trainer keeps
2 MB of them for 500 samples, plus the copies its per-batch concatenation and ``compute_metrics`` make.
On a GPU the activations would not be host memory and those kept predictions would be most of the
growth; on the CPU they sit on top of the 20-30 MB any first ``evaluate()`` adds here (activations,
one-time set-up), which is why the sizes are compared rather than the rows' absolute figures.
``--num-labels`` and ``--sizes`` scale the predictions (e.g. ``--sizes 50 5000``). NeuroTrainer's
classification state is a C x C confusion matrix (8 MB at 1000 classes, quadratic in C): a fixed cost,
not growth with the set.

Segmentation workload: synthetic retinas (``tasks.segmentation.synthetic.synthetic_split``: image, vessel
mask, FOV) of ``--seg-image-size`` (512) px, registered in the child as a dataset source (mean/std 0.5,
so neither row computes statistics), the recipe's U-Net (``unet`` depth 4, base 16, batch norm; binary
head), evaluation batch ``--seg-batch-size`` (2), on the CPU. The plain Trainer keeps 12 bytes per pixel
(float32 logits, int64 labels): 1.5 GB for 500 images of 512 px, plus its concatenation copies;
NeuroTrainer keeps counts. Generating 500 images of 512 px takes about 40 s per child (not in the timed
evaluation) and each evaluation about 0.2-0.5 s per image on two CPU threads: the default run's
segmentation rows take tens of minutes (``--quick``: 64 px images; ``--rows`` picks rows).

3D workload: ``synthetic_3d`` cases (``make_case``: about 64 x 64 x 24 voxels of 0.9 x 0.9 x 2.5 mm, every
other one stored LPS; resampled to the recipe's 1.5 x 1.5 x 2.5 mm, about 38 x 38 x 24), written by
``synthetic_volumes.write_cases`` (2 training cases for the fingerprint, N validation cases) and
registered in the child as a volume source; files and preprocessed volumes are cached under
``NEUROTRAIN_CACHE``, which the parent points at a temporary folder (children share it: writing and
preprocessing happen in the build, before the baseline). Evaluation batch 1 (whole volumes), CPU.

"peak@N" is the evaluation's peak RSS above the baseline (MB, median over rounds); "growth %" is
(peak@large - peak@small) / peak@small; the target is "NeuroTrainer growth within 10%" (its evaluation
memory does not scale with the eval set), and "segmentation NeuroTrainer growth within 10%" (and "3D
segmentation ...") for its row. glibc's malloc thresholds are fixed in the children
(``GLIBC_TUNING``, off with ``--glibc-default``) so RSS follows live memory rather than glibc's cache.

    .venv/bin/python benchmarks/eval_memory.py            # defaults: sizes 50 and 500, 2 rounds
    .venv/bin/python benchmarks/eval_memory.py --quick    # a few seconds per child: smoke run
    .venv/bin/python benchmarks/eval_memory.py --rows seg_plain_trainer seg_neurotrainer --sizes 20 80
    .venv/bin/python benchmarks/eval_memory.py --rows seg3d_neurotrainer --vol-sizes 5 50
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_UPDATE_DOWNLOAD_COUNTS": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "NEUROTRAIN_LOG_LEVEL": "WARNING",
}
for _key, _value in OFFLINE.items():
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[1]
DATASET_NAME = "eval_memory_synthetic"
SEG_DATASET_NAME = "eval_memory_synthetic_retina"
SEG_TRAIN_SAMPLES = 4
SEG_MODEL_KWARGS = {"depth": 4, "base_channels": 16, "norm": "batch"}
SEG_ROWS = ("seg_plain_trainer", "seg_neurotrainer")
SEG3D_DATASET_NAME = "eval_memory_synthetic_3d"
SEG3D_RECIPE = ROOT / "recipes" / "configs" / "synthetic_3d.toml"
SEG3D_TRAIN_CASES = 2
VOLUME_ROWS = ("seg3d_neurotrainer",)
TRAIN_SAMPLES = 64
MB = 1024 * 1024
# Blocks of 64 KiB and more are mmapped and unmapped at free (no dynamic threshold): RSS follows live
# memory instead of what glibc keeps cached, which otherwise moves the peak by +-10 MB from batch to batch.
GLIBC_TUNING = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}


# --- memory ---------------------------------------------------------------------------------------------
def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _vm_hwm() -> int | None:
    """The kernel's peak RSS of this process (bytes), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMeter:
    """Peak RSS over a ``with`` block: the kernel's high-water mark reset on entry, else a sampler thread."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.method = ""
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMeter:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM) to the current
            self.method = "VmHWM (reset)"
        except OSError:
            self.method = "psutil sampling"
            self.peak = rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes())
        else:
            self.peak = _vm_hwm() or rss_bytes()


# --- the workload ---------------------------------------------------------------------------------------
def synthetic_splits(n_eval: int, opts):
    """train (TRAIN_SAMPLES) and valid (n_eval) splits: HWC uint8 images, uniform labels, fixed seed."""
    import datasets
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (opts.image_size, opts.image_size, 3)
    features = datasets.Features(
        {
            "image": datasets.Array3D(shape=shape, dtype="uint8"),
            "label": datasets.ClassLabel(names=[str(i) for i in range(opts.num_labels)]),
        }
    )

    def split(n: int) -> datasets.Dataset:
        images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        labels = rng.integers(0, opts.num_labels, n)
        return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)

    return datasets.DatasetDict({"train": split(TRAIN_SAMPLES), "valid": split(n_eval)})


MODEL_KWARGS = {"channels": [16, 32], "dropout": 0.0}


def build_plain_trainer(n_eval: int, opts, out: str):
    """transformers.Trainer, default settings; accuracy from the gathered logits (compute_metrics)."""
    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    from neurotrain_hf.models import get_model

    set_seed(0)
    model = get_model("simple_cnn", {"kwargs": MODEL_KWARGS}, num_labels=opts.num_labels, in_channels=3)
    valid = synthetic_splits(n_eval, opts)["valid"].with_format("torch")

    def collate_fn(rows):
        x = torch.stack([r["image"] for r in rows]).permute(0, 3, 1, 2).float().div_(255.0)
        return {"pixel_values": (x - 0.5) / 0.5, "labels": torch.stack([r["label"] for r in rows])}

    def compute_metrics(pred):
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    args = TrainingArguments(
        output_dir=out,
        per_device_eval_batch_size=opts.batch_size,
        remove_unused_columns=False,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
    )
    return Trainer(
        model=model, args=args, eval_dataset=valid, data_collator=collate_fn, compute_metrics=compute_metrics
    )


def build_neurotrainer(n_eval: int, opts, out: str):
    """ClassificationTrainer through ``runner.build`` on the same data (a registered dataset source)."""
    from neurotrain_hf.config import build_config
    from neurotrain_hf.data import DatasetSource, register_dataset
    from neurotrain_hf.runner import build

    register_dataset(DATASET_NAME)(
        lambda cfg: DatasetSource(synthetic_splits(n_eval, opts), mean=(0.5,) * 3, std=(0.5,) * 3)
    )
    config = build_config(
        {
            "basic": {"task": "classification", "run_id": "eval_memory", "seed": 0, "output_dir": out},
            "model": {"name": "simple_cnn", "kwargs": MODEL_KWARGS},
            "dataset": {"name": DATASET_NAME, "valid_ratio": 0.0, "test_ratio": 0.0},
            "training": {
                "batch_size": opts.batch_size,
                "metrics": ["accuracy", "f1"],
                "use_cpu": True,
                "plots": False,
                "monitor_resources": False,
                "report_to": "none",
                "disable_tqdm": True,
            },
        },
        source="eval_memory",
    )
    _task, _data, trainer = build(config)
    return trainer


# --- the segmentation workload ---------------------------------------------------------------------------
def seg_valid(n_eval: int, opts):
    """``n_eval`` synthetic retinas (image HxWx3, mask, FOV: uint8 fixed-shape columns) of the eval split."""
    from neurotrain_hf.tasks.segmentation.synthetic import synthetic_split

    return synthetic_split("valid", n_eval, size=opts.seg_image_size)


def build_seg_plain_trainer(n_eval: int, opts, out: str):
    """transformers.Trainer, default settings; accuracy and Dice from all gathered maps (compute_metrics)."""
    import numpy as np
    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    from neurotrain_hf.models import get_model

    set_seed(0)
    model = get_model(
        "unet",
        {"kwargs": SEG_MODEL_KWARGS},
        num_labels=1,
        in_channels=3,
        auto_class="AutoModelForSemanticSegmentation",
    )
    valid = seg_valid(n_eval, opts).with_format("torch", columns=["image", "mask"])

    def collate_fn(rows):
        x = torch.stack([r["image"] for r in rows]).permute(0, 3, 1, 2).float().div_(255.0)
        return {"pixel_values": (x - 0.5) / 0.5, "labels": torch.stack([r["mask"] for r in rows]).long()}

    def compute_metrics(pred):
        fg = pred.predictions[:, 0] > 0  # binary head: logit > 0 <=> probability > 0.5
        ref = pred.label_ids > 0
        inter = float(np.logical_and(fg, ref).sum())
        total = float(fg.sum() + ref.sum())
        return {"accuracy": float((fg == ref).mean()), "dice": 2 * inter / total if total else 1.0}

    args = TrainingArguments(
        output_dir=out,
        per_device_eval_batch_size=opts.seg_batch_size,
        remove_unused_columns=False,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
    )
    return Trainer(
        model=model, args=args, eval_dataset=valid, data_collator=collate_fn, compute_metrics=compute_metrics
    )


def build_seg_neurotrainer(n_eval: int, opts, out: str):
    """SegmentationTrainer through ``runner.build`` on synthetic retinas (a registered dataset source)."""
    import datasets

    from neurotrain_hf.config import build_config
    from neurotrain_hf.data import DatasetSource, register_dataset
    from neurotrain_hf.runner import build
    from neurotrain_hf.tasks.segmentation.synthetic import synthetic_split

    def source(cfg):
        train = synthetic_split("train", SEG_TRAIN_SAMPLES, size=opts.seg_image_size)
        splits = datasets.DatasetDict({"train": train, "valid": seg_valid(n_eval, opts)})
        return DatasetSource(splits, mean=(0.5,) * 3, std=(0.5,) * 3)

    register_dataset(SEG_DATASET_NAME)(source)
    config = build_config(
        {
            "basic": {"task": "segmentation", "run_id": "eval_memory_seg", "seed": 0, "output_dir": out},
            "model": {"name": "unet", "kwargs": SEG_MODEL_KWARGS},
            "dataset": {"name": SEG_DATASET_NAME, "valid_ratio": 0.0, "test_ratio": 0.0},
            "training": {
                "batch_size": opts.seg_batch_size,
                "eval_mode": "full",
                "use_cpu": True,
                "plots": False,
                "monitor_resources": False,
                "report_to": "none",
                "disable_tqdm": True,
            },
        },
        source="eval_memory",
    )
    _task, _data, trainer = build(config)
    assert trainer.args.per_device_eval_batch_size == opts.seg_batch_size
    return trainer


# --- the 3D segmentation workload ------------------------------------------------------------------------
def build_seg3d_neurotrainer(n_eval: int, opts, out: str):
    """SegmentationTrainer on the 3D path (``runner.build``): the 3D recipe on ``n_eval`` synthetic volumes."""
    import datasets

    from neurotrain_hf.config import build_config, read_config_file
    from neurotrain_hf.data import register_dataset
    from neurotrain_hf.runner import build
    from neurotrain_hf.tasks.segmentation.synthetic_volumes import LABELS, write_cases
    from neurotrain_hf.tasks.segmentation.volume_cache import default_cache_root
    from neurotrain_hf.tasks.segmentation.volume_spec import VolumeSource, VolumeSpec, volume_rows

    os.environ.setdefault("NEUROTRAIN_CACHE", str(Path(out) / "cache"))  # the parent sets a shared one

    def source(cfg):
        folder = default_cache_root() / "eval_memory_3d"
        folder.mkdir(parents=True, exist_ok=True)
        rows = write_cases(folder, {"train": SEG3D_TRAIN_CASES, "valid": n_eval})
        spec = VolumeSpec(label_names=list(LABELS), modality="CT", channel_names=["ct"])
        return VolumeSource(datasets.DatasetDict({k: volume_rows(v) for k, v in rows.items()}), volume=spec)

    register_dataset(SEG3D_DATASET_NAME)(source)
    raw = read_config_file(SEG3D_RECIPE)
    raw["basic"].update({"run_id": "eval_memory_seg3d", "seed": 0, "output_dir": out})
    raw["dataset"].update({"name": SEG3D_DATASET_NAME, "valid_ratio": 0.0, "test_ratio": 0.0})
    raw["training"].update(
        {
            "eval_strategy": "no",
            "save_strategy": "no",
            "load_best_model_at_end": False,
            "use_cpu": True,
            "plots": False,
            "monitor_resources": False,
            "report_to": "none",
            "disable_tqdm": True,
        }
    )
    _task, _data, trainer = build(build_config(raw, source="eval_memory"))
    assert trainer.args.per_device_eval_batch_size == 1
    return trainer


# One function per row: (n_eval, opts, output folder) -> a trainer whose eval_dataset has n_eval samples.
ROWS: dict[str, Callable] = {
    "plain_trainer": build_plain_trainer,
    "neurotrainer": build_neurotrainer,
    "seg_plain_trainer": build_seg_plain_trainer,
    "seg_neurotrainer": build_seg_neurotrainer,
    "seg3d_neurotrainer": build_seg3d_neurotrainer,
}


def trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc), so the baseline is live memory."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def preload(row: str) -> None:
    """Import before the baseline what a row would import lazily inside its first evaluation.

    dice+ce imports MONAI's Dice loss on its first call (about 100 MB of RSS and 1-3 s): a one-time cost
    that would inflate peak@small (shrinking the growth %) and the evaluation time. Both segmentation
    rows get it, so their baselines stay comparable.
    """
    if row in SEG_ROWS or row in VOLUME_ROWS:
        with contextlib.suppress(ImportError):
            import monai.losses  # noqa: F401
    if row in VOLUME_ROWS:  # sliding window, restoring to the file's grid, NSD and HD95
        with contextlib.suppress(ImportError):
            import monai.inferers  # noqa: F401
            import monai.metrics  # noqa: F401
            import monai.metrics.utils  # noqa: F401
            import monai.transforms  # noqa: F401
            import scipy.spatial  # noqa: F401


def child(row: str, n_eval: int, opts) -> dict:
    import torch

    torch.set_num_threads(opts.threads)
    preload(row)
    with tempfile.TemporaryDirectory() as out:
        built = time.perf_counter()
        trainer = ROWS[row](n_eval, opts, out)
        build_seconds = time.perf_counter() - built
        assert len(trainer.eval_dataset) == n_eval, (len(trainer.eval_dataset), n_eval)
        gc.collect()
        trim_heap()
        base = rss_bytes()
        start = time.perf_counter()
        with PeakMeter() as meter:
            metrics = trainer.evaluate()
        seconds = time.perf_counter() - start
    score_name = next((k for k in metrics if k.endswith("accuracy")), None) or next(
        (k for k in metrics if k.endswith("mean_dice")), None
    )
    return {
        "row": row,
        "n": n_eval,
        "baseline_mb": base / MB,
        "peak_mb": meter.peak / MB,
        "growth_mb": (meter.peak - base) / MB,
        "seconds": seconds,
        "build_seconds": build_seconds,
        "method": meter.method,
        "score_name": (score_name or "score").removeprefix("eval_"),
        "score": metrics.get(score_name, float("nan")),
    }


# --- the parent -----------------------------------------------------------------------------------------
def measure(row: str, n_eval: int, opts) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", row, "--size", str(n_eval)]
    cmd += ["--num-labels", str(opts.num_labels), "--image-size", str(opts.image_size)]
    cmd += ["--batch-size", str(opts.batch_size), "--threads", str(opts.threads)]
    cmd += ["--seg-image-size", str(opts.seg_image_size), "--seg-batch-size", str(opts.seg_batch_size)]
    return run_child(cmd, f"{row} @ {n_eval}", opts)


def run_child(cmd: list[str], label: str, opts) -> dict:
    """Run one measurement in a fresh process (offline, glibc tuned unless ``--glibc-default``); its last
    JSON line on stdout is the result."""
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT)}
    if not opts.glibc_default:
        env.update(GLIBC_TUNING)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=opts.timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{label} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[50, 500], metavar=("SMALL", "LARGE"))
    parser.add_argument("--num-labels", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="eval batch size of both trainers")
    parser.add_argument("--seg-image-size", type=int, default=512, help="segmentation rows: image side")
    parser.add_argument("--seg-batch-size", type=int, default=2, help="segmentation rows: eval batch size")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per child process")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; medians are reported")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each child")
    parser.add_argument(
        "--glibc-default", action="store_true", help="children keep glibc's default malloc thresholds"
    )
    parser.add_argument(
        "--vol-sizes",
        type=int,
        nargs=2,
        default=[5, 50],
        metavar=("SMALL", "LARGE"),
        help="3D row: validation volumes",
    )
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: sizes 24/96, 100 classes, 32px (64px masks), 3/12 volumes, 1 round",
    )
    parser.add_argument("--child", choices=list(ROWS), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    if parser.parse_known_args(argv)[0].quick:  # smaller defaults; options given explicitly still win
        parser.set_defaults(
            sizes=[24, 96], num_labels=100, image_size=32, seg_image_size=64, vol_sizes=[3, 12], rounds=1
        )
    return parser.parse_args(argv)


def sizes_of(row: str, opts) -> list[int]:
    """(small, large) eval-set sizes of a row: ``--vol-sizes`` for the 3D row, ``--sizes`` otherwise."""
    return list(opts.vol_sizes if row in VOLUME_ROWS else opts.sizes)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.child:
        print(json.dumps(child(opts.child, opts.size, opts)), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="eval-memory-") as cache:
        os.environ["NEUROTRAIN_CACHE"] = (
            cache  # the 3D row's volumes and preprocessed cache (children inherit it)
        )
        runs = run_rounds(opts)
    report(runs, opts)
    return 0


def run_rounds(opts) -> dict[tuple[str, int], list[dict]]:
    runs: dict[tuple[str, int], list[dict]] = {(r, n): [] for r in opts.rows for n in sizes_of(r, opts)}
    for i in range(opts.rounds):
        for k in range(2):
            for row in opts.rows:
                n = sizes_of(row, opts)[k]
                res = measure(row, n, opts)
                runs[(row, n)].append(res)
                print(
                    f"round {i + 1}: {row:18s} n={n:<6d} baseline {res['baseline_mb']:7.1f} MB  "
                    f"peak {res['peak_mb']:7.1f} MB  growth {res['growth_mb']:6.1f} MB  "
                    f"{res['seconds']:5.2f} s  {res['score_name']} {res['score']:.3f}  "
                    f"(build {res['build_seconds']:.1f} s)",
                    flush=True,
                )
    return runs


def report(runs: dict[tuple[str, int], list[dict]], opts) -> None:
    """The workload lines, the peak table and the growth targets."""
    large = opts.sizes[1]
    method = runs[(opts.rows[0], sizes_of(opts.rows[0], opts)[0])][0]["method"]
    print()
    if any(row not in SEG_ROWS and row not in VOLUME_ROWS for row in opts.rows):
        logits_mb = large * opts.num_labels * 4 / MB
        print(
            f"{opts.num_labels} classes, images 3x{opts.image_size}x{opts.image_size}, eval batch "
            f"{opts.batch_size}, {opts.rounds} round(s), peak by {method}; logits of {large} samples: "
            f"{logits_mb:.1f} MB"
        )
    if any(row in SEG_ROWS for row in opts.rows):
        s = opts.seg_image_size
        kept_mb = large * s * s * (4 + 8) / MB
        print(
            f"segmentation: unet {SEG_MODEL_KWARGS}, binary head, images 3x{s}x{s}, eval batch "
            f"{opts.seg_batch_size}, {opts.rounds} round(s), peak by {method}; logit and label maps of "
            f"{large} images: {kept_mb:.1f} MB"
        )
    if any(row in VOLUME_ROWS for row in opts.rows):
        print(
            f"3D segmentation: {SEG3D_RECIPE.name} (sliding window, unet 3D, 4 labels), synthetic_3d volumes "
            f"of about 64x64x24 voxels, {opts.vol_sizes[0]} vs {opts.vol_sizes[1]} volumes, eval batch 1, "
            f"{opts.rounds} round(s), peak by {method}"
        )
    print(f"{'trainer':18s} {'sizes':>9s} {'peak@small MB':>14s} {'peak@large MB':>14s} {'growth %':>10s}")
    growth: dict[str, float] = {}
    for row in opts.rows:
        small_n, large_n = sizes_of(row, opts)
        a = statistics.median(r["growth_mb"] for r in runs[(row, small_n)])
        b = statistics.median(r["growth_mb"] for r in runs[(row, large_n)])
        growth[row] = 100.0 * (b - a) / a if a > 0 else float("nan")
        print(f"{row:18s} {f'{small_n}/{large_n}':>9s} {a:14.1f} {b:14.1f} {growth[row]:+9.1f}%")
    targets = {
        "neurotrainer": "NeuroTrainer",
        "seg_neurotrainer": "segmentation NeuroTrainer",
        "seg3d_neurotrainer": "3D segmentation NeuroTrainer (sliding window)",
    }
    for row, name in targets.items():
        if row in growth:
            ok = abs(growth[row]) <= 10.0
            print(f"{name} growth within 10%: {growth[row]:+.1f}% ({'met' if ok else 'NOT met'})")


if __name__ == "__main__":
    sys.exit(main())

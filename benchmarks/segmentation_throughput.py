"""Segmentation training samples/s: hand-written loop over in-memory arrays vs NeuroTrainer (config path).

Data: ``--images`` synthetic retinas (``tasks.segmentation.synthetic.synthetic_split``) of ``--image-size``
pixels (default: patch + 32), generated once and registered by this script as the dataset
``seg_throughput_retina`` (``register_dataset``); both sides train on the same uint8 arrays.

  (a) a hand-written loop: a map-style dataset over the in-memory uint8 arrays that builds
      ``tv_tensors.Image``/``tv_tensors.Mask`` per sample, applies the transform object of
      ``joint_image_ops(config.augmentation, channels)`` (the same joint crop with ``foreground_ratio``,
      flips, rotation, colour jitter and gamma that neurotrain builds), then scales to [0, 1] and
      normalises with neurotrain's mean/std; ``DataLoader`` (shuffle, ``--workers``), loss
      ``build_loss("dice+ce")``, fused AdamW (weight decay off for biases and norm weights, as the
      Trainer), the config's schedule, gradient clipping at 1.0;
  (b) SegmentationTrainer (NeuroTrainer) from the default segmentation experiment
      (``recipes/configs/synthetic_vessels.toml``) with ``[dataset] name = "seg_throughput_retina"``,
      ``[augmentation] random_crop = --patch`` and ``[training] batch_size``, ``dataloader_num_workers``,
      ``max_steps`` set; evaluation and saving off, logging every 10 steps as the recipe.
Same model (``unet``, the recipe's depth 4, base 16, batch norm, built by the task's ``build_model`` for
both), batch size, device and ``--workers``. The loop carries the vessel mask only; neurotrain's
transform also carries the FOV mask (third tensor) through the same ops. neurotrain's first ``build``
(mean/std pass) is done once, untimed; each round builds a fresh model and trainer.

Samples/s is timed over ``--steps`` optimizer steps after ``--warmup`` steps (loader start-up is in the
warm-up; epoch restarts in the timed region are paid by both). Rounds alternate (a, b, a, b, ...); the
per-round figures, medians and the ratio b/a (target >= 0.95x, also as the median of per-round ratios)
are printed. Data-loading share of (b): "wait" is the time the training loop spends getting its batches
(``Trainer.get_batch_samples``, wrapped: dataset fetch + transform with 0 workers, waiting on workers
otherwise, plus the move to the device) over the timed steps' wall time; "alone" is the time the train
dataloader takes to produce the same number of batches on its own (after as many warm-up batches),
over that same wall time. The loop's wait share (time in ``next(loader)``) is printed for comparison.

    .venv/bin/python benchmarks/segmentation_throughput.py [--steps 100] [--rounds 3] [--workers 0]
    .venv/bin/python benchmarks/segmentation_throughput.py --workers 2 --batch-size 8 --patch 128
    .venv/bin/python benchmarks/segmentation_throughput.py --quick    # 64 px patches, a few steps

3D row (``--3d``): ``--volumes`` synthetic CT-like volumes (blobs of two labels in a noisy body, int16,
1 mm isotropic, ``--volume-size`` voxels, default patch + 32 in x and y and patch + 16 in z: 128 x 128 x
112 for the default 96^3 patches), written as NIfTI into a temporary folder and registered as the
dataset ``seg_throughput_volumes`` (a ``DatasetSource`` with a ``VolumeSpec``). ``NEUROTRAIN_CACHE`` points
into that folder, so the fingerprint and the preprocessed-volume cache land there too.

  (a) a hand-written loop: the preprocessed volumes neurotrain cached (image float32 (C, X, Y, Z), label
      uint8) held in memory as tensors; a map-style dataset applies, per volume, the MONAI ``Compose`` of
      ``volume_ops(config.augmentation, patch)`` (the same pad, ``RandCropByPosNegLabeld`` with
      ``samples_per_volume`` patches, flips and intensity scale/shift neurotrain builds; MONAI metadata
      tracking off while they run, as neurotrain); a collate that stacks the patches; ``DataLoader``
      (shuffle, ``--workers``), ``build_loss("dice+ce")``, AdamW as the Trainer builds it for the recipe's
      ``optim``, the config's schedule, gradient clipping;
  (b) SegmentationTrainer from the 3D default experiment (``recipes/configs/synthetic_3d.toml``) with
      ``[dataset] name = "seg_throughput_volumes"``, ``spacing = [1, 1, 1]``, ``[augmentation] patch_size
      = --patch`` (a cube) and ``[training]`` batch size, workers, ``max_steps`` set, evaluation and saving
      off, reading the cached volumes through the datasets-backed batch loader.
Same model (the recipe's 3D ``unet``, deep supervision off in the model and ``[training]``), loss, batch
size (``--batch-size`` volumes a step, each giving ``samples_per_volume`` patches: samples/s counts
patches), device and workers.

    .venv/bin/python benchmarks/segmentation_throughput.py --3d [--patch 96] [--steps 20] [--rounds 3]
    .venv/bin/python benchmarks/segmentation_throughput.py --3d --quick   # 32^3 patches, a few steps
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NEUROTRAIN_LOG_LEVEL", "WARNING")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from timing import StepTimer, device, sync  # noqa: E402
from torchvision import tv_tensors  # noqa: E402
from torchvision.transforms.v2 import functional as TF  # noqa: E402
from transformers import PrinterCallback, get_scheduler, set_seed  # noqa: E402

from neurotrain_hf.config import build_config, read_config_file  # noqa: E402
from neurotrain_hf.data import DatasetSource, register_dataset  # noqa: E402
from neurotrain_hf.losses import build_loss  # noqa: E402
from neurotrain_hf.runner import build  # noqa: E402
from neurotrain_hf.tasks.segmentation.synthetic import synthetic_split  # noqa: E402
from neurotrain_hf.tasks.segmentation.transforms import joint_image_ops  # noqa: E402
from neurotrain_hf.tasks.segmentation.volume_spec import VolumeSource, VolumeSpec, volume_rows  # noqa: E402
from neurotrain_hf.tasks.segmentation.volume_transforms import patch_size, volume_ops  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "synthetic_vessels.toml"
RECIPE_3D = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "synthetic_3d.toml"
DATASET = "seg_throughput_retina"
DATASET_3D = "seg_throughput_volumes"
LABELS_3D = ["background", "blob_a", "blob_b"]
LOSS = "dice+ce"
TARGET = 0.95
QUICK = {"images": 16, "patch": 64, "batch_size": 4, "steps": 4, "warmup": 2, "rounds": 1}
DEFAULTS_3D = {"patch": 96, "batch_size": 2, "steps": 20, "warmup": 3}
QUICK_3D = {"volumes": 4, "patch": 32, "batch_size": 2, "steps": 4, "warmup": 2, "rounds": 1}


# --- data -----------------------------------------------------------------------------------------------
def make_split(opts) -> datasets.Dataset:
    """The train split (fixed-shape uint8 columns), registered as ``DATASET`` for the config path."""
    split = synthetic_split("train", opts.images, size=opts.image_size)
    register_dataset(DATASET)(lambda cfg: DatasetSource(datasets.DatasetDict({"train": split})))
    return split


def arrays(split: datasets.Dataset, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(images N x H x W x 3, masks N x H x W), uint8, in memory.

    Read in chunks: the numpy format gives these uint8 columns as int64 (8x the memory).
    """
    n, size = len(split), split.features["mask"].shape[0]
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=np.uint8)
    view = split.with_format("numpy", columns=["image", "mask"])
    for start in range(0, n, chunk):
        rows = view[start : start + chunk]
        images[start : start + chunk] = rows["image"]
        masks[start : start + chunk] = rows["mask"]
    return images, masks


class LoopDataset(torch.utils.data.Dataset):
    """Per sample: tv_tensors from the uint8 arrays, the joint random ops, scale and normalise."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, ops, mean, std) -> None:
        self.images, self.masks, self.ops = images, masks, ops
        self.mean, self.std = list(mean), list(std)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = tv_tensors.Image(torch.from_numpy(self.images[i]).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(self.masks[i]))
        if self.ops is not None:
            image, mask = self.ops(image, mask)
        x = TF.to_dtype(image.as_subclass(torch.Tensor), torch.float32, scale=True)
        return TF.normalize(x, self.mean, self.std), mask.as_subclass(torch.Tensor).long()


# --- (a) hand-written loop ------------------------------------------------------------------------------
def run_loop(task, data, config, images, masks, opts) -> dict:
    dev = device()
    ops = joint_image_ops(config.augmentation, data.info.channels)
    set_seed(opts.seed)
    loader = torch.utils.data.DataLoader(
        LoopDataset(images, masks, ops, data.info.mean, data.info.std),
        batch_size=opts.batch_size,
        shuffle=True,
        num_workers=opts.workers,
        pin_memory=dev.type == "cuda",
    )
    return train_loop(task, data, config, loader, opts, dev, fused=True)  # the Trainer's fused AdamW


def train_loop(task, data, config, loader, opts, dev, fused: bool) -> dict:
    """The hand-written loop both rows time: the task's model, ``dice+ce``, AdamW as the Trainer builds it
    (no weight decay on the 1-D parameters: biases and norm weights), the config's schedule, clipping at 1.0."""
    args = config.training
    model = task.build_model(config, data).to(dev).train()
    loss_fn = build_loss(LOSS)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(
        groups,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        **({"fused": True} if fused else {}),
    )
    total = opts.warmup + opts.steps
    scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=total
    )
    step, t0, wait = 0, None, 0.0
    while step < total:
        batches = iter(loader)
        while step < total:
            start = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if t0 is not None:
                wait += time.perf_counter() - start
            loss = loss_fn(model(pixel_values=x).logits, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == opts.warmup:
                sync()
                t0 = time.perf_counter()
    sync()
    wall = time.perf_counter() - t0
    return {"rate": opts.steps * opts.per_step / wall, "wall": wall, "wait": wait}


# --- (b) NeuroTrainer through the config path -----------------------------------------------------------
def neuro_config(out: str, opts):
    """The default segmentation experiment on the registered dataset, patches of ``--patch``."""
    raw = read_config_file(RECIPE)
    raw["basic"].update({"run_id": "segmentation_throughput", "seed": opts.seed, "output_dir": out})
    raw["dataset"] = {"name": DATASET, "valid_ratio": 0.0, "test_ratio": 0.0}
    raw["augmentation"]["random_crop"] = opts.patch
    raw["training"].update(
        {
            "batch_size": opts.batch_size,
            "per_device_eval_batch_size": opts.batch_size,
            "max_steps": opts.warmup + opts.steps,
            "dataloader_num_workers": opts.workers,
            "eval_strategy": "no",
            "save_strategy": "no",
            "plots": False,
            "report_to": "none",
            "disable_tqdm": True,
        }
    )
    return build_config(raw, source="segmentation_throughput")


class FetchTimer(StepTimer):
    """A ``StepTimer`` that also adds up the batch fetches made during the timed steps."""

    def __init__(self, warmup: int) -> None:
        super().__init__(warmup)
        self.wait = 0.0

    def timed_fetch(self, fetch):
        """Wraps ``Trainer.get_batch_samples``: adds its time to ``wait`` once the timed steps began."""

        def wrapped(*args, **kwargs):
            start = time.perf_counter()
            out = fetch(*args, **kwargs)
            if self.t0 is not None:
                self.wait += time.perf_counter() - start
            return out

        return wrapped


def loader_alone(trainer, warmup: int, steps: int) -> float:
    """Seconds the train dataloader takes for ``steps`` batches after ``warmup`` untimed ones."""
    loader = trainer.get_train_dataloader()
    done, t0 = 0, None
    while done < warmup + steps:
        for _batch in loader:
            done += 1
            if done == warmup:
                sync()
                t0 = time.perf_counter()
            if done >= warmup + steps:
                break
    sync()
    return time.perf_counter() - t0


def run_neurotrainer(task, data, config, opts) -> dict:
    timer = FetchTimer(opts.warmup)
    set_seed(opts.seed)
    trainer = task.build_trainer(config, task.build_model(config, data), data, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    trainer.get_batch_samples = timer.timed_fetch(trainer.get_batch_samples)
    trainer.train()
    if timer.steps != opts.steps:
        raise RuntimeError(f"timed {timer.steps} steps, expected {opts.steps}")
    wall = timer.t1 - timer.t0
    alone = loader_alone(trainer, opts.warmup, opts.steps)
    return {"rate": opts.steps * opts.per_step / wall, "wall": wall, "wait": timer.wait, "alone": alone}


# --- 3D: data ---------------------------------------------------------------------------------------------
def blob_volume(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(int16 CT-like volume, uint8 labels): a noisy body in air with two ellipsoid blobs (labels 1, 2)."""
    x, y, z = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    centre = [s / 2 for s in shape]
    image = np.full(shape, -1000.0, np.float32)
    label = np.zeros(shape, np.uint8)
    body = sum(((g - c) / (0.45 * s)) ** 2 for g, c, s in zip((x, y, z), centre, shape)) < 1
    image[body] = 40.0
    for value, hu in ((1, 120.0), (2, 220.0)):
        radii = rng.uniform(0.08, 0.16, 3) * np.asarray(shape)
        mid = [c + rng.uniform(-0.18, 0.18) * s for c, s in zip(centre, shape)]
        blob = sum(((g - m) / r) ** 2 for g, m, r in zip((x, y, z), mid, radii)) < 1
        blob &= body & (label == 0)
        label[blob] = value
        image[blob] = hu
    image += rng.normal(0, 20, shape).astype(np.float32)
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16), label


def write_volumes(folder: Path, opts) -> list[dict]:
    """``--volumes`` NIfTI cases (1 mm isotropic, RAS) in ``folder``; their volume rows."""
    import nibabel as nib

    rng = np.random.default_rng(opts.seed)
    rows = []
    for i in range(opts.volumes):
        image, label = blob_volume(rng, tuple(opts.volume_size))
        stem = f"case_{i:03d}"
        paths = folder / f"{stem}.nii.gz", folder / f"{stem}_label.nii.gz"
        for path, data in zip(paths, (image, label)):
            nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
        rows.append({"image": [str(paths[0])], "mask": str(paths[1]), "id": stem, "source": DATASET_3D})
    return rows


def register_volumes(folder: Path, opts) -> None:
    """Write the cases and register them as ``DATASET_3D`` (train split only)."""
    rows = write_volumes(folder, opts)
    spec = VolumeSpec(label_names=list(LABELS_3D), modality="CT", channel_names=["ct"])
    register_dataset(DATASET_3D)(
        lambda cfg: VolumeSource(datasets.DatasetDict({"train": volume_rows(rows)}), volume=spec)
    )


def cached_volumes(data, crop_foreground: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The preprocessed train cases neurotrain cached: (image float32 (C, X, Y, Z), label uint8 (1, X, Y, Z))."""
    from neurotrain_hf.tasks.segmentation.volume_cache import load_meta

    out = []
    for folder in data.splits["train"].with_format(None)["cache"]:
        image = np.load(Path(folder) / "image.npy")
        label = np.load(Path(folder) / "label.npy")
        if crop_foreground:  # as neurotrain's training transform
            box = tuple(slice(a, b) for a, b in load_meta(folder)["bbox"])
            image, label = image[(slice(None), *box)], label[box]
        out.append(
            (
                torch.from_numpy(np.ascontiguousarray(image)),
                torch.from_numpy(np.ascontiguousarray(label))[None],
            )
        )
    return out


class VolumeLoopDataset(torch.utils.data.Dataset):
    """Per volume: the MONAI random ops -> ``samples_per_volume`` (image, label) patches."""

    def __init__(self, volumes: list[tuple[torch.Tensor, torch.Tensor]], ops) -> None:
        self.volumes, self.ops = volumes, ops

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, i: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        from monai.data import set_track_meta

        image, label = self.volumes[i]
        set_track_meta(False)
        try:
            samples = self.ops({"image": image, "label": label})
        finally:
            set_track_meta(True)
        samples = samples if isinstance(samples, list) else [samples]
        return [(torch.as_tensor(s["image"]), torch.as_tensor(s["label"])[0]) for s in samples]


def collate_patches(
    items: list[list[tuple[torch.Tensor, torch.Tensor]]],
) -> tuple[torch.Tensor, torch.Tensor]:
    patches = [p for item in items for p in item]
    return torch.stack([p[0] for p in patches]).float(), torch.stack([p[1] for p in patches]).long()


def seed_worker(_worker_id: int) -> None:
    """Each worker's copy of the MONAI ops draws its own random stream."""
    info = torch.utils.data.get_worker_info()
    info.dataset.ops.set_random_state(seed=info.seed % (2**31 - 1))


def alternate(loop, task, data, config, opts) -> dict[str, list[dict]]:
    """``opts.rounds`` rounds of (a) the hand loop then (b) the trainer, each round's figures printed."""
    results: dict[str, list[dict]] = {"a_loop": [], "b_neurotrainer": []}
    for r in range(opts.rounds):
        results["a_loop"].append(loop())
        results["b_neurotrainer"].append(run_neurotrainer(task, data, config, opts))
        a, b = results["a_loop"][-1], results["b_neurotrainer"][-1]
        print(
            f"round {r + 1}: a_loop {a['rate']:.2f} samples/s (wait {share(a['wait'], a['wall'])}), "
            f"b_neurotrainer {b['rate']:.2f} samples/s (wait {share(b['wait'], b['wall'])}, "
            f"loader alone {share(b['alone'], b['wall'])}), b/a {b['rate'] / a['rate']:.3f}",
            flush=True,
        )
    return results


# --- 3D: (a) hand-written loop ---------------------------------------------------------------------------
def run_loop_3d(task, data, config, volumes, opts) -> dict:
    dev = device()
    set_seed(opts.seed)
    dataset = VolumeLoopDataset(volumes, volume_ops(config.augmentation, patch_size(config.augmentation)))
    dataset.ops.set_random_state(seed=opts.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=opts.batch_size,
        shuffle=True,
        num_workers=opts.workers,
        collate_fn=collate_patches,
        worker_init_fn=seed_worker,
        pin_memory=dev.type == "cuda",
    )
    optim = str(getattr(config.training.optim, "value", config.training.optim))
    return train_loop(task, data, config, loader, opts, dev, fused=optim == "adamw_torch_fused")


# --- 3D: (b) NeuroTrainer through the config path ---------------------------------------------------------
def neuro_config_3d(out: str, opts):
    """The 3D default experiment on the registered volumes: 1 mm spacing, ``--patch`` cubes, no deep supervision."""
    raw = read_config_file(RECIPE_3D)
    raw["basic"].update({"run_id": "segmentation_throughput_3d", "seed": opts.seed, "output_dir": out})
    raw["model"]["kwargs"] = {**raw["model"]["kwargs"], "deep_supervision": False}
    raw["dataset"] = {"name": DATASET_3D, "spacing": [1.0, 1.0, 1.0], "valid_ratio": 0.0, "test_ratio": 0.0}
    raw["augmentation"].update(
        {"patch_size": [opts.patch] * 3, "samples_per_volume": opts.samples_per_volume}
    )
    raw["training"].pop("nsd_tolerances", None)  # per organ of synthetic_3d (evaluation is off anyway)
    raw["training"].update(
        {
            "metrics": ["mean_dice"],
            "deep_supervision": False,
            "per_device_train_batch_size": opts.batch_size,
            "max_steps": opts.warmup + opts.steps,
            "dataloader_num_workers": opts.workers,
            "eval_strategy": "no",
            "save_strategy": "no",
            "load_best_model_at_end": False,
            "plots": False,
            "report_to": "none",
            "disable_tqdm": True,
        }
    )
    return build_config(raw, source="segmentation_throughput")


def main_3d(opts) -> int:
    with tempfile.TemporaryDirectory(prefix="seg-throughput-3d-") as tmp:
        os.environ["NEUROTRAIN_CACHE"] = str(Path(tmp) / "cache")  # fingerprint and preprocessed volumes
        folder = Path(tmp) / "volumes"
        folder.mkdir()
        start = time.perf_counter()
        register_volumes(folder, opts)
        size = "x".join(map(str, opts.volume_size))
        print(
            f"wrote {opts.volumes} synthetic volumes of {size} voxels in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        config = neuro_config_3d(str(Path(tmp) / "out"), opts)
        start = time.perf_counter()
        task, data, _ = build(config)  # headers, fingerprint, preprocessing into the cache: untimed
        volumes = cached_volumes(data, config.dataset.crop_foreground)
        shapes = sorted({tuple(v[0].shape[1:]) for v in volumes})
        print(
            f"neurotrain build (fingerprint, preprocessing) {time.perf_counter() - start:.1f} s; preprocessed "
            f"shapes {shapes}; {data.report['preprocessed']['written']} cached",
            flush=True,
        )
        results = alternate(lambda: run_loop_3d(task, data, config, volumes, opts), task, data, config, opts)
    aug = config.augmentation
    print(
        f"\n3D: model unet {dict(config.model.kwargs)}, loss {LOSS} (deep supervision off), batch "
        f"{opts.batch_size} volumes x {aug.samples_per_volume} patches of {patch_size(aug)} "
        f"(foreground_ratio {aug.foreground_ratio}, axis_flip {aug.axis_flip}, rotate90 {aug.rotate90}, "
        f"rotation {aug.rotation}, intensity scale/shift {aug.intensity_scale}/{aug.intensity_shift}), "
        f"{opts.volumes} volumes of {size} at 1 mm, {opts.workers} workers, {opts.steps} timed steps after "
        f"{opts.warmup}, device {device()}, torch threads {torch.get_num_threads()}"
    )
    report(results)
    return 0


def report(results: dict[str, list[dict]]) -> None:
    """Medians, the ratio b/a (of medians and per round) and the data-loading shares."""
    med = {k: statistics.median(r["rate"] for r in v) for k, v in results.items()}
    for k, v in results.items():
        runs = ", ".join(f"{r['rate']:.2f}" for r in v)
        print(f"{k:16s} median {med[k]:8.2f} samples/s   runs: {runs}")
    paired = statistics.median(
        b["rate"] / a["rate"] for a, b in zip(results["a_loop"], results["b_neurotrainer"])
    )
    ratio = med["b_neurotrainer"] / med["a_loop"]
    print(
        f"ratio b/a = {ratio:.3f} (of medians), {paired:.3f} (median of per-round)   (target >= {TARGET}x: "
        f"{'met' if paired >= TARGET else 'NOT met'})"
    )
    b_runs = results["b_neurotrainer"]
    wait = statistics.median(r["wait"] / r["wall"] for r in b_runs)
    alone = statistics.median(r["alone"] / r["wall"] for r in b_runs)
    loop_wait = statistics.median(r["wait"] / r["wall"] for r in results["a_loop"])
    print(
        f"data-loading share of b (median): wait {100 * wait:.1f}% of the timed wall time, loader alone "
        f"{100 * alone:.1f}%; a's wait {100 * loop_wait:.1f}%"
    )


# --- main -----------------------------------------------------------------------------------------------
def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128, help="training images generated")
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: patch + 32)")
    parser.add_argument("--patch", type=int, default=256, help="[augmentation] random_crop")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--workers", type=int, default=0, help="dataloader_num_workers of both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 16 images, 64 px patches, 4 steps, 1 round (--3d: 4 volumes, 32^3 patches, 4 steps)",
    )
    parser.add_argument(
        "--3d", dest="three_d", action="store_true", help="the 3D row: volumes, patch cubes (default 96)"
    )
    parser.add_argument("--volumes", type=int, default=8, help="--3d: training volumes written")
    parser.add_argument(
        "--volume-size",
        type=int,
        nargs=3,
        default=None,
        metavar=("X", "Y", "Z"),
        help="--3d: volume shape in voxels of 1 mm (default: patch + 32, patch + 32, patch + 16)",
    )
    parser.add_argument(
        "--samples-per-volume", type=int, default=2, help="--3d: [augmentation] samples_per_volume"
    )
    known = parser.parse_known_args(argv)[0]
    if known.three_d:  # smaller defaults; options given explicitly still win
        parser.set_defaults(**{**DEFAULTS_3D, **(QUICK_3D if known.quick else {})})
    elif known.quick:
        parser.set_defaults(**QUICK)
    opts = parser.parse_args(argv)
    if opts.warmup < 1 or opts.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    if opts.three_d:
        opts.volume_size = opts.volume_size or [opts.patch + 32, opts.patch + 32, opts.patch + 16]
        if min(opts.volume_size) < opts.patch:
            parser.error("--volume-size must be at least --patch on every axis")
        opts.per_step = opts.batch_size * opts.samples_per_volume  # patches per optimizer step
        return opts
    opts.per_step = opts.batch_size
    opts.image_size = opts.image_size or opts.patch + 32
    if opts.image_size < opts.patch:
        parser.error("--image-size must be at least --patch")
    return opts


def share(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:5.1f}%"


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    logging.getLogger("neurotrain_hf").setLevel(logging.WARNING)
    datasets.disable_progress_bars()
    if opts.three_d:
        return main_3d(opts)
    start = time.perf_counter()
    split = make_split(opts)
    images, masks = arrays(split)
    print(
        f"generated {opts.images} synthetic retinas of {opts.image_size} px in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as out:
        config = neuro_config(out, opts)
        start = time.perf_counter()
        task, data, _ = build(config)  # data preparation and the mean/std pass: untimed
        print(
            f"neurotrain build {time.perf_counter() - start:.1f} s; mean "
            f"{np.round(data.info.mean, 3).tolist()}, std {np.round(data.info.std, 3).tolist()}",
            flush=True,
        )
        results = alternate(
            lambda: run_loop(task, data, config, images, masks, opts), task, data, config, opts
        )

    aug = config.augmentation
    print(
        f"\nmodel unet {dict(config.model.kwargs)}, loss {LOSS}, batch {opts.batch_size}, {opts.images} images of "
        f"{opts.image_size} px -> {opts.patch} px patches (foreground_ratio {aug.foreground_ratio}, flips "
        f"{aug.horizontal_flip}/{aug.vertical_flip}, rotation {aug.rotation}, color_jitter {aug.color_jitter}, "
        f"gamma {aug.gamma}), {opts.workers} workers, {opts.steps} timed steps after {opts.warmup}, "
        f"device {device()}, torch threads {torch.get_num_threads()}"
    )
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

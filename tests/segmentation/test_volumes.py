"""3D segmentation building blocks: geometry round trips, sliding windows, fingerprint, cache, checks,
BraTS regions, and the shipped 3D configs against official-layout fixtures."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from neurotrain_hf.config import build_config, load_config
from neurotrain_hf.errors import DataError
from neurotrain_hf.tasks import get_task
from neurotrain_hf.tasks.segmentation.fingerprint import compute_fingerprint
from neurotrain_hf.tasks.segmentation.inference import SegmentationInference
from neurotrain_hf.tasks.segmentation.metrics import SegmentationMetrics
from neurotrain_hf.tasks.segmentation.settings import SegmentationSettings as Settings
from neurotrain_hf.tasks.segmentation.volume_processor import NeuroVolumeProcessor
from tests.conftest import ROOT
from tests.segmentation.volume_fixtures import ellipsoid, save, write_brats, write_btcv, write_msd_spleen

TASK = get_task("segmentation").load()


def volume_config(tmp_path: Path, dataset: dict, **sections):
    """A tiny 3D experiment on a fixture (patch 16^3, 2 steps) with its own preprocessed cache."""
    data = {
        "basic": {"task": "segmentation", "run_id": "v", "seed": 0, "output_dir": str(tmp_path / "runs")},
        "model": {"name": "unet", "kwargs": {"spatial_dims": 3, "depth": 2, "base_channels": 4}},
        "dataset": {
            "preprocessed_dir": str(tmp_path / "cache"),
            "valid_ratio": 0.0,
            "test_ratio": 0.0,
            **dataset,
        },
        "augmentation": {"patch_size": [16, 16, 8], "foreground_ratio": 0.5},
        "training": {
            "max_steps": 2,
            "metrics": ["mean_dice", "per_class"],
            "metric_for_best_model": "mean_dice",
            "report_to": "none",
        },
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return build_config(data, source="test.toml")


def lps_case(
    tmp_path: Path, spacing=(0.8, 0.8, 3.0), shape=(30, 28, 10)
) -> tuple[Path, np.ndarray, np.ndarray]:
    """An LPS-stored CT volume with an off-centre ellipsoid (label 1); returns (file, image, mask)."""
    aff = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    aff[:3, 3] = [12.0, -7.0, 30.0]
    mask = ellipsoid(shape, (0.6, 0.4, 0.5), (0.3, 0.25, 0.35))
    image = np.where(mask, 200.0, -50.0).astype(np.float32)
    return save(image, aff, tmp_path / "case.nii.gz"), image, mask


# --- geometry ---------------------------------------------------------------------------------------
def test_restore_is_exact_at_the_file_spacing_and_close_after_resampling(tmp_path):
    path, _, mask = lps_case(tmp_path)
    processor = NeuroVolumeProcessor(spacing=[0.8, 0.8, 3.0], intensity="none")
    item = processor.load(path)
    assert item["pixel_values"].shape[1:] == mask.shape  # reoriented to RAS: same extent, axes flipped
    labels = processor.prepare_label(mask.astype(np.uint8), item["dst_affine"].numpy())
    back = NeuroVolumeProcessor.restore(
        labels[None].float(), item["src_affine"], item["dst_affine"], mask.shape, "nearest"
    )
    assert np.array_equal(back[0].numpy().astype(bool), mask)  # voxel-exact in the file's own order
    resampled = NeuroVolumeProcessor(spacing=[1.3, 1.1, 2.0], intensity="none")
    item = resampled.load(path)
    assert item["pixel_values"].shape[1:] != mask.shape
    back = NeuroVolumeProcessor.restore(
        item["pixel_values"], item["src_affine"], item["dst_affine"], mask.shape
    )
    restored = back[0].numpy() > 75.0
    dice = 2 * (restored & mask).sum() / (restored.sum() + mask.sum())
    assert dice > 0.93
    # the world coordinates of the structure are kept: centres of mass agree within half a voxel
    aff = item["dst_affine"].numpy()
    world = [aff[:3, :3] @ np.argwhere(m).mean(0) + aff[:3, 3] for m in (restored, mask)]
    assert np.abs(world[0] - world[1]).max() < 0.5 * 0.8


def test_processor_round_trips_through_auto_image_processor(tmp_path):
    from transformers import AutoImageProcessor

    import neurotrain_hf  # noqa: F401

    processor = NeuroVolumeProcessor(
        num_channels=1,
        channel_names=["ct"],
        spacing=[1, 1, 2],
        intensity="ct",
        clip_low=[-100.0],
        clip_high=[300.0],
        intensity_mean=[40.0],
        intensity_std=[80.0],
    )
    processor.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is NeuroVolumeProcessor
    path, _, _ = lps_case(tmp_path)
    a, b = processor(str(path))["pixel_values"], loaded(str(path))["pixel_values"]
    assert torch.equal(a, b)
    assert float(a.max()) == pytest.approx((200 - 40) / 80) and float(a.min()) == pytest.approx(
        (-50 - 40) / 80
    )


def test_sliding_window_equals_full_volume_for_a_pointwise_model():
    from transformers.modeling_outputs import SemanticSegmenterOutput

    class Pointwise(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(2, 3, 1)

        def forward(self, pixel_values):
            return SemanticSegmenterOutput(logits=self.conv(pixel_values))

    torch.manual_seed(0)
    model, x = Pointwise().eval(), torch.randn(1, 2, 37, 29, 19)
    full = SegmentationInference(Settings("full"))(model, {"pixel_values": x}).logits
    for blend in ("gaussian", "constant"):
        sliding = SegmentationInference(
            Settings("sliding", roi_size=[16, 16, 8], overlap=0.5, sw_batch_size=3, blend=blend)
        )
        assert torch.allclose(sliding(model, {"pixel_values": x}).logits, full, atol=1e-5)


def test_sliding_window_matches_monai_and_mirroring_averages_flips():
    from monai.inferers import sliding_window_inference

    from neurotrain_hf.tasks.segmentation.unet import UNetConfig, UNetForSemanticSegmentation

    torch.manual_seed(0)
    model = UNetForSemanticSegmentation(
        UNetConfig(spatial_dims=3, num_channels=1, depth=2, base_channels=4, num_labels=3)
    ).eval()
    x = torch.randn(1, 1, 24, 20, 12)
    ours = SegmentationInference(
        Settings("sliding", roi_size=[16, 16, 8], overlap=0.25, sw_batch_size=2, pad_multiple=2)
    )
    with torch.no_grad():
        got = ours(model, {"pixel_values": x}).logits
        ref = sliding_window_inference(
            x, [16, 16, 8], 2, lambda t: model(pixel_values=t).logits, overlap=0.25, mode="gaussian"
        )
        assert torch.allclose(got, ref, atol=1e-6)
        mirrored = SegmentationInference(Settings("full", mirror_axes=[0, 2], pad_multiple=2))(
            model, {"pixel_values": x}
        ).logits
        passes = [
            model(pixel_values=x.flip(d)).logits.flip(d) if d else model(pixel_values=x).logits
            for d in ([], [2], [4], [2, 4])
        ]
        assert torch.allclose(mirrored, sum(passes) / 4, atol=1e-6)


# --- fingerprint and cache ------------------------------------------------------------------------
def test_fingerprint_matches_numpy_on_the_foreground(tmp_path):
    root = write_msd_spleen(tmp_path / "msd", cases=3)
    cfg = volume_config(tmp_path, {"name": "msd", "root": str(root)})
    from neurotrain_hf.data.registry import DATASETS

    source = DATASETS.get("msd")(cfg.dataset)
    rows = list(source.splits["train"].with_format(None))
    fp = compute_fingerprint(rows, source.volume)
    voxels, spacings = [], []
    for row in rows:
        image = nib.load(row["image"][0])
        label = np.asarray(nib.load(row["mask"]).dataobj)
        voxels.append(np.asarray(image.dataobj, dtype=np.float32)[label > 0])
        spacings.append(np.abs(np.diag(image.affine)[:3]))
    v = np.concatenate(voxels).astype(np.float64)
    stats = fp["intensity"][source.volume.channel_names[0]]
    assert stats["mean"] == pytest.approx(v.mean()) and stats["std"] == pytest.approx(v.std())
    assert stats["percentile_00_5"] == pytest.approx(np.percentile(v, 0.5))
    assert stats["percentile_99_5"] == pytest.approx(np.percentile(v, 99.5))
    assert fp["median_spacing"] == pytest.approx(np.median(spacings, 0).tolist())


def test_preprocessed_cache_is_reused_and_invalidated(tmp_path):
    root = write_msd_spleen(tmp_path / "msd", cases=3)
    first = TASK.prepare_data(volume_config(tmp_path, {"name": "msd", "root": str(root)}))
    assert first.report["preprocessed"]["written"] == 3 and first.report["preprocessed"]["reused"] == 0
    assert first.processor.intensity == "ct" and len(first.processor.spacing) == 3  # CT -> nnU-Net CT scheme
    again = TASK.prepare_data(volume_config(tmp_path, {"name": "msd", "root": str(root)}))
    assert again.report["preprocessed"] == {**first.report["preprocessed"], "written": 0, "reused": 3}
    batch = again.splits["train"].with_format(None)[0]  # same rows, same cache folders
    assert batch["cache"] == first.splits["train"].with_format(None)[0]["cache"]
    changed = TASK.prepare_data(
        volume_config(tmp_path, {"name": "msd", "root": str(root), "spacing": [1.0, 1.0, 2.0]})
    )
    assert changed.report["preprocessed"]["written"] == 3  # new settings: every case preprocessed again
    case = Path(changed.splits["train"].with_format(None)[0]["image"][0])
    case.touch()
    case.chmod(0o644)
    import os

    os.utime(case, ns=(os.stat(case).st_atime_ns, os.stat(case).st_mtime_ns + 10**9))  # the file changed
    touched = TASK.prepare_data(
        volume_config(tmp_path, {"name": "msd", "root": str(root), "spacing": [1.0, 1.0, 2.0]})
    )
    assert touched.report["preprocessed"]["written"] == 1 and touched.report["preprocessed"]["reused"] == 2


def test_training_batches_are_seeded_patches(tmp_path):
    from neurotrain_hf.data.loader import BatchFetchDataset

    root = write_msd_spleen(tmp_path / "msd", cases=2)
    cfg = volume_config(
        tmp_path,
        {"name": "msd", "root": str(root)},
        augmentation={"samples_per_volume": 3, "axis_flip": 0.5, "intensity_shift": 0.1},
    )
    data = TASK.prepare_data(cfg)
    loader = BatchFetchDataset(data.splits["train"], seed=7)
    a, b = loader.__getitems__([0, 1]), loader.__getitems__([0, 1])
    assert a["pixel_values"].shape == (6, 1, 16, 16, 8) and a["labels"].shape == (6, 16, 16, 8)
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["labels"], b["labels"])
    loader.set_epoch(1)
    assert not torch.equal(loader.__getitems__([0, 1])["pixel_values"], a["pixel_values"])
    assert a["labels"].sum() > 0  # foreground-centred patches find the spleen


# --- bad input ------------------------------------------------------------------------------------
def _spleen_case(root: Path, name: str) -> tuple[Path, Path]:
    return root / "imagesTr" / name, root / "labelsTr" / name


@pytest.mark.parametrize("problem", ["truncated", "not_nifti", "shape", "affine", "label_value"])
def test_bad_volume_is_one_line_naming_the_file_or_skipped(tmp_path, problem):
    root = write_msd_spleen(tmp_path / "msd", cases=3)
    name = json.loads((root / "dataset.json").read_text())["training"][1]["image"].split("/")[-1]
    image, label = _spleen_case(root, name)
    bad = image
    if problem == "truncated":
        data = image.read_bytes()
        image.write_bytes(data[: len(data) // 2])
    elif problem == "not_nifti":
        image.write_bytes(gzip.compress(b"this is not a NIfTI file at all" * 20))
    elif problem == "shape":
        ref = nib.load(label)
        save(np.zeros((10, 10, 5), np.uint8), ref.affine, label)
        bad = label
    elif problem == "affine":
        ref = nib.load(label)
        save(np.asarray(ref.dataobj), ref.affine @ np.diag([1, 1, 1.5, 1]), label)
        bad = label
    else:
        ref = nib.load(label)
        save(np.asarray(ref.dataobj) * 7, ref.affine, label)
        bad = label
    cfg = volume_config(tmp_path, {"name": "msd", "root": str(root)})
    with pytest.raises(DataError) as info:
        TASK.prepare_data(cfg)
    message = str(info.value)
    assert "\n" not in message and bad.name in message and "skip_bad_samples" in message
    cfg = volume_config(tmp_path, {"name": "msd", "root": str(root), "skip_bad_samples": True})
    data = TASK.prepare_data(cfg)
    assert data.report["skipped_samples"] == {"train": 1} and len(data.splits["train"]) == 2


# --- BraTS regions --------------------------------------------------------------------------------
def test_brats_editions_map_to_the_same_labels_and_regions(tmp_path):
    cached = {}
    for edition in (2021, 2023):
        root = write_brats(tmp_path / str(edition), edition=edition, cases=[0, 2])
        cfg = volume_config(
            tmp_path / f"r{edition}",
            {"name": "brats", "root": str(root), "intensity": "zscore", "crop_foreground": True},
        )
        data = TASK.prepare_data(cfg)
        assert data.info.regions == {"ET": [3], "TC": [1, 3], "WT": [1, 2, 3]} and data.info.channels == 4
        folders = data.splits["train"].with_format(None)["cache"]
        cached[edition] = [np.load(Path(f) / "label_original.npy") for f in folders]
    for a, b in zip(cached[2021], cached[2023]):
        assert np.array_equal(a, b) and set(np.unique(a)) == {0, 1, 2, 3}
    # region Dice from the training labels equals the official definitions on the raw 2021 labels
    root = tmp_path / "2021"
    raw = [np.asarray(nib.load(p).dataobj) for p in sorted(root.rglob("*_seg.nii.gz"))]
    rng = np.random.default_rng(0)
    preds = [
        np.where(rng.random(r.shape) < 0.1, rng.integers(0, 4, r.shape), np.rint(r).astype(int) % 4)
        for r in raw
    ]
    preds = [np.where(r == 4, np.where(rng.random(r.shape) < 0.8, 3, 0), p) for r, p in zip(raw, preds)]
    metrics = SegmentationMetrics(
        ["mean_dice", "per_class"], 4, regions={"ET": [3], "TC": [1, 3], "WT": [1, 2, 3]}
    )
    official = {"ET": [4], "TC": [1, 4], "WT": [1, 2, 4]}
    expected = {k: [] for k in official}
    for r, p in zip(raw, preds):
        mapped = np.where(r == 4, 3, r).astype(np.int64)
        metrics.update({"labels": torch.from_numpy(p[None])}, {"labels": torch.from_numpy(mapped[None])})
        p_raw = np.where(p == 3, 4, p)
        for k, labels in official.items():
            pm, rm = np.isin(p_raw, labels), np.isin(r, labels)
            expected[k].append(2 * (pm & rm).sum() / (pm.sum() + rm.sum()))
    got = metrics.compute()
    for k in official:
        assert got[f"dice_{k}"] == pytest.approx(np.mean(expected[k]))
    assert got["mean_dice"] == pytest.approx(np.mean([np.mean(v) for v in expected.values()]))


def test_region_and_class_metrics_in_mm_match_monai():
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    rng = np.random.default_rng(1)
    ref = np.zeros((20, 18, 8), np.int64)
    ref[4:14, 3:12, 2:6] = 1
    ref[12:18, 10:16, 1:7] = 2
    pred = np.roll(ref, 1, axis=0)
    pred[rng.random(ref.shape) < 0.02] = 0
    spacing = [0.7, 0.9, 2.5]
    metrics = SegmentationMetrics(
        ["mean_nsd", "mean_hd95", "per_class"], 3, nsd_tolerance=[1.0, 2.0], label_names=["bg", "a", "b"]
    )
    metrics.update(
        {"labels": torch.from_numpy(pred[None])},
        {"labels": torch.from_numpy(ref[None]), "spacing": torch.tensor([spacing])},
    )
    got = metrics.compute()
    onehot = lambda m: torch.nn.functional.one_hot(torch.from_numpy(m), 3).permute(3, 0, 1, 2)[None]  # noqa: E731
    nsd = compute_surface_dice(onehot(pred), onehot(ref), [1.0, 2.0], spacing=spacing)[0]
    hd = compute_hausdorff_distance(onehot(pred), onehot(ref), percentile=95, spacing=spacing)[0]
    assert [got["nsd_a"], got["nsd_b"]] == pytest.approx(nsd.tolist(), abs=1e-6)
    assert [got["hd95_a"], got["hd95_b"]] == pytest.approx(hd.tolist(), abs=1e-5)


# --- shipped configs ------------------------------------------------------------------------------
REAL_CONFIGS = {
    "btcv_swinunetr": lambda d: write_btcv(d, cases=("0001", "0002", "0035"), layout="raw"),
    "btcv_dynunet": lambda d: write_btcv(d, cases=("0001", "0002", "0035"), layout="monai"),
    "brats_segresnet": lambda d: write_brats(d, edition=2023, cases=4),
    "msd_spleen_unet": lambda d: write_msd_spleen(d, cases=5),
}


@pytest.mark.parametrize("name", sorted(REAL_CONFIGS))
def test_shipped_3d_configs_prepare_their_official_layouts_and_build(tmp_path, name):
    root = REAL_CONFIGS[name](tmp_path / "data")
    overrides = [
        f"--dataset.root={root}",
        f"--dataset.preprocessed_dir={tmp_path / 'cache'}",
        "--basic.output_dir",
        str(tmp_path),
    ]
    config = load_config(ROOT / "recipes" / "configs" / f"{name}.toml", overrides)
    data = TASK.prepare_data(config)
    assert len(data.splits["train"]) >= 2 and data.info.spatial_dims == 3
    model = TASK.build_model(config, data)
    assert model.config.num_labels == data.info.num_labels and model.config.spatial_dims == 3
    trainer_batch = data.splits["train"][0:1]
    assert list(trainer_batch["pixel_values"].shape[2:]) == config.augmentation.patch_size

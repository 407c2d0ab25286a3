"""2D segmentation: synthetic data, joint transforms, sliding windows, losses, FOV metrics, runs."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors
from transformers import AutoModelForSemanticSegmentation

from neurotrain_hf.config import build_config
from neurotrain_hf.errors import DataError
from neurotrain_hf.losses import build_loss
from neurotrain_hf.models import get_model
from neurotrain_hf.runner import build
from neurotrain_hf.runner import run as run_experiment
from neurotrain_hf.tasks.segmentation.config import SegmentationAugmentation as AugmentationConfig
from neurotrain_hf.tasks.segmentation.inference import SegmentationInference
from neurotrain_hf.tasks.segmentation.metrics import SegmentationMetrics
from neurotrain_hf.tasks.segmentation.settings import SegmentationSettings as Settings
from neurotrain_hf.tasks.segmentation.synthetic import synthetic_retina
from neurotrain_hf.tasks.segmentation.transforms import joint_image_ops
from neurotrain_hf.trainer.run_folder import read_history

from ..conftest import RECIPES, run_python
from ..metric_refs import monai_overlap, soft_cldice_loss


def seg_config(tmp_path, run_id="seg", **sections):
    base = {
        "basic": {"task": "segmentation", "run_id": run_id, "seed": 0, "output_dir": str(tmp_path / "runs")},
        "model": {"name": "unet", "kwargs": {"depth": 3, "base_channels": 8}},
        "dataset": {"name": "synthetic_retina", "max_samples": 16},
        "training": {
            "num_train_epochs": 2,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "logging_steps": 1,
            "disable_tqdm": True,
            "report_to": "none",
        },
        "augmentation": {"random_crop": 48, "foreground_ratio": 0.5, "horizontal_flip": 0.5},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return build_config(base, source="test.toml")


def saved_model_on_test_split(config) -> tuple[torch.Tensor, dict]:
    """The saved model's logits on the rebuilt (seeded) test split, and that split's batch as the
    Tester sees it (labels, FOV): the inputs of an independent recomputation of the test metrics."""
    _, data, trainer = build(config)
    split = data.splits["test"]
    batch = trainer.wrap_dataset(split, trainer.args).__getitems__(list(range(len(split))))
    model = AutoModelForSemanticSegmentation.from_pretrained(str(config.run_dir / "model")).eval()
    with torch.no_grad():
        logits = model(pixel_values=batch["pixel_values"]).logits
    return logits, batch


def test_synthetic_retina_is_deterministic_and_plausible():
    a, b = synthetic_retina(3), synthetic_retina(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    image, vessels, fov = a
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert 0.05 < vessels.mean() / fov.mean() < 0.35  # vessel share of the FOV, as in fundus photos
    assert not vessels[fov == 0].any() and not image[fov == 0].any()
    inside, outside = image[..., 1][(vessels == 1)], image[..., 1][(vessels == 0) & (fov == 1)]
    assert inside.mean() < outside.mean()  # vessels are darker than the background
    assert not np.array_equal(synthetic_retina(4)[1], vessels)


@pytest.mark.parametrize(
    "aug",
    [
        {"random_crop": 40, "foreground_ratio": 1.0},
        {"horizontal_flip": 1.0, "vertical_flip": 1.0},
        {"rotation": 30.0},
        {"elastic": 30.0},
        {"random_crop": 40, "rotation": 20.0, "horizontal_flip": 0.5, "color_jitter": 0.3, "gamma": 0.3},
        {"clahe": 1.0, "horizontal_flip": 1.0},
    ],
)
def test_joint_transforms_keep_image_and_mask_aligned(aug):
    """A pattern drawn into the image and the mask is still where the mask says after every op."""
    rng = np.random.default_rng(0)
    mask = (rng.random((64, 64)) < 0.3).astype(np.int64)
    mask = np.kron(mask[::4, ::4], np.ones((4, 4), dtype=np.int64))  # 4 px blocks survive resampling
    image = np.stack([mask * 200 + 20] * 3).astype(np.uint8)
    ops = joint_image_ops(AugmentationConfig(**aug), channels=3)
    for seed in range(5):
        torch.manual_seed(seed)
        img, lab = ops(tv_tensors.Image(torch.from_numpy(image)), tv_tensors.Mask(torch.from_numpy(mask)))
        assert img.shape[-2:] == lab.shape[-2:]
        bright = img[0].numpy() > 110
        moved = lab.numpy() > 0
        if "color_jitter" in aug or "elastic" in aug or "rotation" in aug or "clahe" in aug:
            # interpolation differs at block edges (bilinear image, nearest mask): compare away from edges
            assert (bright != moved).mean() < 0.06
        else:
            assert np.array_equal(bright, moved)
        assert set(np.unique(lab.numpy())) <= {0, 1}  # masks are resampled with nearest neighbours


def test_foreground_ratio_centres_patches_on_foreground():
    mask = np.zeros((96, 96), dtype=np.int64)
    mask[80:84, 5:9] = 1
    ops = joint_image_ops(AugmentationConfig(random_crop=16, foreground_ratio=1.0), channels=1)
    for seed in range(10):
        torch.manual_seed(seed)
        _, lab = ops(tv_tensors.Image(torch.zeros(1, 96, 96)), tv_tensors.Mask(torch.from_numpy(mask)))
        assert lab.shape == (16, 16) and lab.sum() > 0


def test_sliding_window_covering_the_image_equals_whole_image():
    model = get_model(
        "unet", {"kwargs": {"depth": 3, "base_channels": 4}}, num_labels=1, in_channels=3
    ).eval()
    x = torch.randn(2, 3, 40, 40)
    full = SegmentationInference(Settings("full", pad_multiple=4))
    window = SegmentationInference(
        Settings("sliding", roi_size=40, overlap=0.0, blend="constant", pad_multiple=4)
    )
    with torch.no_grad():
        a, b = full(model, {"pixel_values": x}).logits, window(model, {"pixel_values": x}).logits
    assert a.shape == (2, 1, 40, 40)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    small = SegmentationInference(Settings("sliding", roi_size=16, overlap=0.5, pad_multiple=4))
    with torch.no_grad():
        c = small(model, {"pixel_values": x}).logits
    assert c.shape == a.shape and torch.isfinite(c).all()


def test_losses_match_monai_and_direct_formulas():
    from monai.losses import DiceLoss

    torch.manual_seed(0)
    logits, labels = torch.randn(3, 1, 8, 8), (torch.rand(3, 8, 8) > 0.6).long()
    p = logits[:, 0].sigmoid()
    eps = 1e-5
    direct = 1 - (2 * (p * labels).sum((1, 2)) + eps) / (p.sum((1, 2)) + labels.sum((1, 2)) + eps)
    torch.testing.assert_close(build_loss("dice")(logits, labels), direct.mean())
    bce = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    torch.testing.assert_close(build_loss("ce")(logits, labels), bce)
    torch.testing.assert_close(build_loss("dice+ce")(logits, labels), direct.mean() + bce)
    multi, target = torch.randn(3, 4, 8, 8), torch.randint(0, 4, (3, 8, 8))
    reference = DiceLoss(softmax=True, to_onehot_y=True, include_background=False)(multi, target[:, None])
    torch.testing.assert_close(build_loss("dice")(multi, target), reference)
    torch.testing.assert_close(build_loss("ce")(multi, target), F.cross_entropy(multi, target))
    tp, fp, fn = (p * labels).sum((1, 2)), (p * (1 - labels)).sum((1, 2)), ((1 - p) * labels).sum((1, 2))
    tversky = 1 - (tp + eps) / (tp + 0.3 * fp + 0.7 * fn + eps)
    torch.testing.assert_close(build_loss("tversky")(logits, labels), tversky.mean(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        build_loss("focal_tversky")(logits, labels), (tversky**0.75).mean(), rtol=1e-4, atol=1e-5
    )
    per_item = build_loss("dice+ce").per_item(logits, labels)
    assert per_item.shape == (3,) and torch.allclose(per_item.mean(), build_loss("dice+ce")(logits, labels))


def test_fov_metrics_equal_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, recall_score, roc_auc_score

    rng = np.random.default_rng(1)
    prob = rng.random((5, 12, 12)).astype(np.float32)
    ref = (rng.random((5, 12, 12)) < prob * 0.9).astype(np.int64)
    fov = rng.random((5, 12, 12)) > 0.3
    metrics = SegmentationMetrics(["accuracy", "sensitivity", "specificity", "f1", "mcc", "auc", "iou"], 1)
    for lo, hi in ((0, 2), (2, 5)):  # streamed in two batches
        metrics.update(
            {
                "probability": torch.tensor(prob[lo:hi]),
                "labels": torch.tensor((prob[lo:hi] >= 0.5).astype(np.int64)),
            },
            {"labels": torch.tensor(ref[lo:hi]), "fov": torch.tensor(fov[lo:hi])},
        )
    out = metrics.compute()
    y, p = ref[fov], prob[fov]
    pred = (p >= 0.5).astype(int)
    assert out["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert out["sensitivity"] == pytest.approx(recall_score(y, pred))
    assert out["specificity"] == pytest.approx(recall_score(1 - y, 1 - pred))
    assert out["f1"] == pytest.approx(f1_score(y, pred))
    assert out["mcc"] == pytest.approx(matthews_corrcoef(y, pred))
    assert out["auc"] == pytest.approx(roc_auc_score(y, p), abs=2e-3)  # 1,001-point grid
    tp = ((pred == 1) & (y == 1)).sum()
    assert out["iou"] == pytest.approx(tp / ((pred == 1) | (y == 1)).sum())


def test_surface_metrics_equal_monai():
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    rng = np.random.default_rng(2)
    pred = torch.from_numpy(rng.random((3, 20, 20)) > 0.6).long()
    ref = torch.from_numpy(rng.random((3, 20, 20)) > 0.6).long()
    metrics = SegmentationMetrics(["mean_hd95", "mean_nsd"], 1, nsd_tolerance=1.0)
    metrics.update(
        {"probability": pred.float(), "labels": pred}, {"labels": ref, "fov": torch.ones_like(ref).bool()}
    )
    out = metrics.compute()
    hd = compute_hausdorff_distance(pred[:, None].bool(), ref[:, None].bool(), percentile=95)
    assert out["mean_hd95"] == pytest.approx(float(hd.mean()), rel=1e-6)
    onehot = lambda x: torch.stack([x == 0, x == 1], 1).float()  # noqa: E731
    nsd = compute_surface_dice(onehot(pred), onehot(ref), class_thresholds=[1.0], include_background=False)
    assert out["mean_nsd"] == pytest.approx(float(nsd.mean()), rel=1e-5)


def test_dense_focal_and_cldice_are_per_sample():
    torch.manual_seed(1)
    logits, labels = torch.randn(3, 1, 12, 12), (torch.rand(3, 12, 12) > 0.7).long()
    p = logits[:, 0].sigmoid()
    pt = torch.where(labels == 1, p, 1 - p)
    focal = (-((1 - pt) ** 2) * pt.log()).mean((1, 2))
    torch.testing.assert_close(build_loss("focal").per_item(logits, labels), focal, rtol=1e-5, atol=1e-6)
    # soft clDice against the paper's formula written with scipy (tests/metric_refs.py); MONAI adds 1e-4
    # to the harmonic mean's denominator, which moves the value by at most 5e-5
    cl = build_loss("cldice").per_item(logits, labels)
    np.testing.assert_allclose(cl.numpy(), soft_cldice_loss(p.numpy(), labels.numpy()), atol=1e-4)
    assert build_loss("cldice")(logits, labels) == pytest.approx(float(cl.mean()), rel=1e-6)
    perfect = build_loss("cldice").per_item((labels[:, None].float() - 0.5) * 60, labels)
    np.testing.assert_allclose(perfect.numpy(), 0.0, atol=1e-4)  # clDice of a perfect prediction is 1


def test_segmentation_run_end_to_end(tmp_path, capsys):
    """Also: the best checkpoint picked by MCC, and ``threshold = "best"`` used by the Tester and the
    Predictor (checked against scikit-learn on the test images' probabilities)."""
    from sklearn.metrics import f1_score

    from neurotrain_hf.cli import main
    from neurotrain_hf.predictor import Predictor

    training = {
        "num_train_epochs": 8,
        "learning_rate": 1e-2,
        "metric_for_best_model": "mcc",
        "threshold": "best",
    }
    config = seg_config(tmp_path, training=training)
    report = run_experiment(config)
    run = config.run_dir
    evals = [(r["step"], r["eval_mcc"]) for r in read_history(run) if "eval_mcc" in r]
    best_step, best_mcc = max(evals, key=lambda e: e[1])
    assert len(evals) == 8 and report["best_metric"] == pytest.approx(best_mcc)
    assert report["best_checkpoint"].endswith(f"checkpoint-{best_step}")
    settings = json.loads((run / "model" / "config.json").read_text())["neurotrain_inference"]
    assert (
        settings["threshold"] == "best" and settings["best_threshold"] == report["valid"]["best_f1_threshold"]
    )
    best = settings["best_threshold"]
    assert best != 0.5  # else this would not tell "best" from the default
    predictor = Predictor.from_pretrained(run)
    truth, predicted = [], []
    for i in range(16):  # the test split, rebuilt: synthetic_retina(20000 + i), scored inside the FOV
        image, vessels, fov = synthetic_retina(20_000 + i, 96, 0)
        record = predictor(image)
        assert record["threshold"] == best
        np.testing.assert_array_equal(record["mask"], record["probability"] >= best)
        truth.append(vessels[fov > 0])
        predicted.append(record["mask"][fov > 0])
    assert report["test"]["f1"] == pytest.approx(
        f1_score(np.concatenate(truth), np.concatenate(predicted)), abs=1e-6
    )
    losses = [r["loss"] for r in read_history(run) if "loss" in r and "eval_loss" not in r]
    assert losses[-1] < losses[0]
    assert report["test"]["num_samples"] == 16 and report["test"]["auc"] > 0.8  # chance is 0.5
    for name in (
        "model/config.json",
        "model/model.safetensors",
        "model/preprocessor_config.json",
        "test_per_sample.csv",
    ):
        assert (run / name).is_file(), name
    assert len(list((run / "overlays").glob("test_*.png"))) == 8
    rows = (run / "test_per_sample.csv").read_text().splitlines()
    assert rows[0] == "index,dice,iou,sensitivity,specificity,accuracy,loss" and len(rows) == 17
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["neurotrain_task"] == "segmentation"
    assert 0 <= saved["neurotrain_inference"]["best_threshold"] <= 1  # tuned on validation, saved
    model = AutoModelForSemanticSegmentation.from_pretrained(str(run / "model"))
    assert type(model).__name__ == "UNetForSemanticSegmentation"
    image, _, _ = synthetic_retina(999)
    Image.fromarray(image).save(tmp_path / "eye.png")
    assert main(["predict", str(run), str(tmp_path / "eye.png")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["shape"] == [96, 96] and 0 < line["foreground_fraction"] < 0.5


def write_pairs(root, bad_size=(20, 16), bad_values=(0, 255), good_values=(0, 255)):
    """Two image/mask pairs: ``s0`` good, ``s1`` with the given image size and mask values."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i, ((w, h), values) in enumerate((((20, 16), good_values), (bad_size, bad_values))):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(np.resize(np.asarray(values, np.uint8), (16, 20))).save(
            root / "masks" / f"s{i}_mask.png"
        )


@pytest.mark.parametrize(
    ("size", "values", "model", "match"),
    [
        ((24, 16), (0, 255), {}, "mask is 20x16 but its image .* is 24x16"),
        ((20, 16), (0, 128, 255), {}, "mask has 3 values .* not a binary pair"),
        ((20, 16), (0, 1, 2, 5), {"num_labels": 3}, "label 5 but \\[model\\] num_labels is 3"),
    ],
)
def test_bad_pairs_stop_with_one_line_or_are_skipped(tmp_path, size, values, model, match):
    write_pairs(tmp_path / "pairs", size, values, good_values=(0, 1, 2) if model else (0, 255))
    dataset = {"name": "segmentation_folder", "root": str(tmp_path / "pairs"), "max_samples": None}
    with pytest.raises(DataError, match=match) as err:
        build(seg_config(tmp_path, dataset=dataset, model=model))
    assert "\n" not in str(err.value) and "s1_mask.png" in str(err.value)
    skipping = seg_config(
        tmp_path,
        dataset={**dataset, "skip_bad_samples": True, "valid_ratio": 0.0, "test_ratio": 0.0},
        model=model,
        training={"eval_strategy": "no"},
    )
    _, data, _ = build(skipping)
    assert data.report["skipped_samples"] == {"train": 1} and len(data.splits["train"]) == 1


def test_deep_supervision_adds_weighted_auxiliary_losses(tmp_path):
    config = seg_config(
        tmp_path,
        model={"kwargs": {"depth": 3, "base_channels": 4, "deep_supervision": True}},
        training={"deep_supervision": True, "loss": "dice"},
    )
    _, data, trainer = build(config)
    batch = trainer.wrap_dataset(data.splits["train"], trainer.args).__getitems__([0, 1, 2])
    model = trainer.model.train()
    outputs = model(pixel_values=batch["pixel_values"])
    aux = outputs.hidden_states
    assert len(aux) == 2  # two decoder levels below the output
    dice = build_loss("dice")
    parts = [dice(a, batch["labels"]) for a in aux] + [dice(outputs.logits, batch["labels"])]
    weights = torch.tensor([0.25, 0.5, 1.0])
    expected = (weights / weights.sum() * torch.stack(parts)).sum()
    torch.testing.assert_close(trainer.loss_from_outputs(outputs, batch), expected)
    trainer.args.deep_supervision = False
    torch.testing.assert_close(trainer.loss_from_outputs(outputs, batch), parts[-1])


def test_multiclass_label_maps_and_saved_post_processing(tmp_path, capsys):
    from neurotrain_hf.cli import main

    root = tmp_path / "labels"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(12):
        image, vessels, fov = synthetic_retina(i, size=32)
        Image.fromarray(image).save(root / "images" / f"c{i:02d}.png")
        Image.fromarray((vessels + fov).astype(np.uint8)).save(root / "masks" / f"c{i:02d}_mask.png")  # 0/1/2
    config = seg_config(
        tmp_path,
        model={"num_labels": 3},
        dataset={"name": "segmentation_folder", "root": str(root), "max_samples": None},
        training={
            "num_train_epochs": 3,
            "metrics": ["mean_dice", "mean_iou"],
            "metric_for_best_model": "mean_dice",
            "post_min_size": 10**6,
        },
        augmentation={"random_crop": 32},
    )
    report = run_experiment(config)
    assert "f1" not in report["test"]  # FOV metrics: binary only
    logits, batch = saved_model_on_test_split(config)  # Dice recomputed by MONAI from the label maps
    maps, refs = list(logits.argmax(1).numpy()), list(batch["labels"].numpy())
    expected = monai_overlap("dice", maps, refs, 3)
    assert 0 < expected["mean_dice"] < 1  # neither trivially empty nor perfect
    assert report["test"]["mean_dice"] == pytest.approx(expected["mean_dice"], abs=1e-6)
    saved = json.loads((config.run_dir / "model" / "config.json").read_text())
    assert len(saved["id2label"]) == 3 and saved["neurotrain_inference"]["postprocess"]["min_size"] == 10**6
    assert main(["predict", str(config.run_dir), str(root / "images" / "c00.png")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["foreground_fraction"] == 0.0  # every component is below min_size: post-processing ran


def test_default_recipe_config_parses():
    config = build_config(
        __import__("tomllib").loads((RECIPES / "configs" / "synthetic_vessels.toml").read_text())
    )
    assert config.basic.task == "segmentation" and config.training.loss == "dice+ce"


@pytest.mark.slow
def test_default_segmentation_recipe_reaches_target(tmp_path):
    """What `make train-seg` runs, on 15 of its 40 epochs: Dice (F1) inside the FOV >= 0.80 on the held-out
    synthetic images already (0.917 measured; the full default is the reviewers' `make train-seg` check)."""
    args = [
        "recipes/train_segmentation.py",
        "--basic.output_dir",
        str(tmp_path),
        "--training.num_train_epochs",
        "15",
    ]
    proc = run_python(args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run folder:" in proc.stdout and proc.stdout.strip().splitlines()[-1].startswith("test metrics: {")
    report = json.loads((tmp_path / "segmentation" / "synthetic_vessels" / "report.json").read_text())
    assert report["test"]["f1"] >= 0.80 and report["test"]["num_samples"] == 16


@pytest.mark.parametrize("name", ["drive", "stare"])
def test_official_layouts_train_end_to_end(tmp_path, name):
    """TIFF + GIF (DRIVE, FOV masks, test labels withheld) and gzipped PPM (STARE) through a whole run."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, recall_score

    from .test_sources import write_drive, write_stare

    root = (
        write_drive(tmp_path / "DRIVE", test_manual=False)
        if name == "drive"
        else write_stare(tmp_path / "STARE")
    )
    config = seg_config(
        tmp_path,
        run_id=name,
        dataset={
            "name": name,
            "root": str(root),
            "max_samples": None,
            "valid_ratio": 0.3,
            "test_ratio": 0.3,
        },
        training={"num_train_epochs": 1, "batch_size": 2},
        augmentation={"random_crop": None, "foreground_ratio": 0.0, "resize": 16},
    )
    report = run_experiment(config)
    assert report["test"]["num_samples"] >= 1
    logits, batch = saved_model_on_test_split(config)  # FOV metrics recomputed by scikit-learn
    inside = batch["fov"].bool()
    truth, predicted = batch["labels"][inside].numpy(), (logits[:, 0].sigmoid()[inside] >= 0.5).numpy()
    for key, fn in (("f1", f1_score), ("accuracy", accuracy_score), ("mcc", matthews_corrcoef)):
        assert report["test"][key] == pytest.approx(fn(truth, predicted), abs=1e-6), key
    assert report["test"]["sensitivity"] == pytest.approx(recall_score(truth, predicted), abs=1e-6)
    assert report["test"]["specificity"] == pytest.approx(recall_score(1 - truth, 1 - predicted), abs=1e-6)
    assert report["dataset"]["channels"] == 3 and report["dataset"]["sources"] == [name]
    assert (config.run_dir / "model" / "model.safetensors").is_file()


def test_images_of_several_sizes(tmp_path):
    """Patches train on any size, evaluation goes one image at a time; without patches: one line."""
    root = tmp_path / "sizes"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, size in enumerate((40, 40, 48, 48, 56, 56)):
        image, vessels, _ = synthetic_retina(i, size=size)
        Image.fromarray(image).save(root / "images" / f"m{i}.png")
        Image.fromarray(vessels * 255).save(root / "masks" / f"m{i}_mask.png")
    dataset = {"name": "segmentation_folder", "root": str(root), "max_samples": None, "valid_ratio": 0.34}
    config = seg_config(
        tmp_path, dataset=dataset, training={"num_train_epochs": 1, "per_device_eval_batch_size": 4}
    )
    report = run_experiment(config)
    assert config.training.per_device_eval_batch_size == 1 and report["test"]["num_samples"] >= 1
    from neurotrain_hf import Predictor

    files = [str(root / "images" / f"m{i}.png") for i in (0, 2, 4, 1)]
    masks = [r["mask"] for r in Predictor.from_pretrained(config.run_dir, batch_size=4).predict(files)]
    assert [m.shape for m in masks] == [(40, 40), (48, 48), (56, 56), (40, 40)]  # each in its own size
    with pytest.raises(DataError, match="differ in size; set \\[augmentation\\] random_crop"):
        build(
            seg_config(tmp_path, dataset=dataset, augmentation={"random_crop": None, "foreground_ratio": 0.0})
        )

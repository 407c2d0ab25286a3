"""``neurotrain analyze dataset``: duplicates planted across splits are found (and only they), class
counts, mask, box and text statistics equal references computed here from the raw data, and unreadable
samples are counted and named instead of raising."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from neurotrain_hf.config import build_config
from neurotrain_hf.data import prepare_data
from neurotrain_hf.tools.dataset_report import analyze_dataset, summary_line

from ..conftest import make_config
from ..helpers.tiny_runs import config as tiny_config


def smooth(seed: int, size: int = 48) -> np.ndarray:
    """A photo-like RGB picture (smooth colour blobs, values 20-229 so +5 does not clip)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(20, 230, (6, 6, 3)).astype(np.uint8)
    big = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)).astype(int)
    return np.clip(big, 20, 229).astype(np.uint8)


def save(array: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def pairs(report: dict, key: str) -> set[frozenset]:
    return {frozenset((p["a"]["id"], p["b"]["id"])) for p in report["duplicates"][key]}


@pytest.fixture(scope="module")
def folder_report(tmp_path_factory):
    """An image folder with train/valid/test folders, an exact copy (PNG in train, BMP in test), a resized
    JPEG copy, a copy 5 grey levels brighter, a truncated file, and distinct pictures everywhere else."""
    tmp = tmp_path_factory.mktemp("folder")
    root, seed = tmp / "photos", 100
    for split, per_class in (("train", 6), ("valid", 2), ("test", 3)):
        for cls in ("cat", "dog"):
            for i in range(per_class):
                save(smooth(seed), root / split / cls / f"{split}_{cls}_{i}.png")
                seed += 1
    planted = smooth(1)
    save(planted, root / "train" / "cat" / "dup_a.png")
    save(planted, root / "test" / "dog" / "dup_b.bmp")  # same pixels, another format
    near = smooth(2)
    save(near, root / "train" / "dog" / "near_a.png")
    small = Image.fromarray(near).resize((40, 40), Image.Resampling.BILINEAR)
    save(np.asarray(small), root / "test" / "cat" / "near_b.jpg", quality=85)
    bright = smooth(3)
    save(bright, root / "valid" / "cat" / "bright_a.png")
    save(bright + 5, root / "test" / "dog" / "bright_b.png")
    truncated = io.BytesIO()
    Image.fromarray(smooth(4)).save(truncated, format="PNG")
    (root / "test" / "cat" / "broken.png").write_bytes(truncated.getvalue()[:200])
    dataset = {"name": "imagefolder", "root": str(root), "max_samples": None, "cache_dir": str(tmp / "hf")}
    cfg = make_config(tmp, dataset=dataset, augmentation={"resize": 48}, training={"plots": False})
    out = tmp / "report"
    return analyze_dataset(cfg, out), out, root


def test_planted_exact_and_near_duplicates_are_found_and_nothing_else(folder_report):
    report, out, _ = folder_report
    assert pairs(report, "exact_pairs") == {frozenset({"dup_a.png", "dup_b.bmp"})}
    assert pairs(report, "near_pairs") == {
        frozenset({"near_a.png", "near_b.jpg"}),
        frozenset({"bright_a.png", "bright_b.png"}),
    }
    dup = report["duplicates"]
    assert dup["by_pair"] == {
        "train/valid": {"exact": 0, "near": 0},
        "train/test": {"exact": 1, "near": 1},
        "valid/test": {"exact": 0, "near": 1},
    }
    assert all(p["distance"] <= dup["near_threshold"] <= 8 for p in dup["near_pairs"])
    exact = dup["exact_pairs"][0]
    assert (exact["a"]["split"], exact["b"]["split"]) == ("train", "test")
    md = (out / "dataset_report.md").read_text()
    assert "dup_a.png" in md and "near_b.jpg" in md and "bright_b.png" in md
    assert json.loads((out / "dataset_report.json").read_text())["duplicates"]["exact_across"] == 1


def test_folder_counts_unreadable_file_and_summary_line(folder_report):
    report, out, root = folder_report
    files = {
        s: sorted(p.name for p in (root / s).rglob("*.*") if p.name != "broken.png") for s in report["splits"]
    }
    assert report["splits"] == {s: len(f) for s, f in files.items()} == {"train": 14, "valid": 5, "test": 9}
    counts = report["classes"]["label"]["counts"]
    for split in files:
        by_folder = {
            c: len(list((root / split / c).glob("*.*"))) - (split == "test" and c == "cat")
            for c in ("cat", "dog")
        }
        assert counts[split] == by_folder
    assert report["loader_skipped"]["skipped_samples"] == {"test": 1}
    assert "broken.png" in (out / "dataset_report.md").read_text()
    line = summary_line(report)
    assert line == (
        "3 splits, 28 samples, 2 classes; 1 exact and 2 near duplicates across splits "
        f"(train/test: 2, valid/test: 1); 1 unreadable sample; report: {out / 'dataset_report.md'}"
    )
    images = report["images"]["image"]
    assert images["train"]["shapes"] == {"48x48x3": 14} and images["test"]["modes"] == {"RGB": 9}
    assert images["test"]["shapes"] == {"48x48x3": 8, "40x40x3": 1}
    assert (out / "intensity_image.png").stat().st_size > 1000


def test_digit_class_counts_equal_bincount_and_max_images(tmp_path):
    cfg = make_config(tmp_path, dataset={"max_samples": 64})
    raw = {k: v.with_format(None) for k, v in prepare_data(cfg).splits.items()}
    names = raw["train"].features["label"].names
    full = analyze_dataset(cfg, tmp_path / "full")
    for split, rows in raw.items():
        expected = np.bincount(rows["label"], minlength=10)
        assert [full["classes"]["label"]["counts"][split].get(n, 0) for n in names] == expected.tolist()
        pixels = np.asarray(rows["image"], np.float32)
        assert full["images"]["image"][split]["shapes"] == {"8x8": len(rows)}
        assert full["images"]["image"][split]["channels"]["1"]["mean"][0] == pytest.approx(
            pixels.mean(), rel=1e-5
        )
    assert summary_line(full).startswith("3 splits, 192 samples, 10 classes; ")
    few = analyze_dataset(cfg, tmp_path / "few", max_images=10)
    assert few["scanned"] == {"train": 10, "valid": 10, "test": 10}
    assert few["classes"] == full["classes"]  # class counts read every row
    assert sum(few["images"]["image"]["test"]["shapes"].values()) == 10


def blob_masks() -> dict[str, np.ndarray]:
    """Hand-made binary masks: diagonal neighbours (two components), a ring, specks, an empty mask."""
    masks = {}
    a = np.zeros((24, 20), np.uint8)
    a[2:6, 2:6] = 255
    a[6:9, 6:9] = 255  # touches the first square at a corner only
    a[15:20, 3:17] = 255
    masks["m0"] = a
    b = np.zeros((24, 20), np.uint8)
    b[4:16, 4:16] = 255
    b[7:13, 7:13] = 0
    b[9:11, 9:11] = 255  # an island inside the ring
    masks["m1"] = b
    c = np.zeros((24, 20), np.uint8)
    c[::5, ::4] = 255
    masks["m2"] = c
    masks["m3"] = np.zeros((24, 20), np.uint8)
    masks["m4"] = np.full((24, 20), 255, np.uint8)
    return masks


def test_mask_statistics_equal_scipy_label(tmp_path):
    masks, root = blob_masks(), tmp_path / "pairs"
    layout = {"train": ["m0", "m1", "m2"], "valid": ["m3"], "test": ["m4"]}
    for split, stems in layout.items():
        for stem in stems:
            save(smooth(int(stem[1:]), 24)[:, :20], root / split / "images" / f"{stem}.png")
            save(masks[stem], root / split / "masks" / f"{stem}.png")
    data = tiny_config("segmentation", tmp_path)
    data["dataset"] = {"name": "segmentation_folder", "root": str(root), "max_samples": None}
    report = analyze_dataset(build_config(data), tmp_path / "report")
    stats = report["masks"]["mask"]
    for split, stems in layout.items():
        fractions = [float((masks[s] > 0).mean()) for s in stems]
        labelled = [ndimage.label(masks[s] > 0) for s in stems]
        counts = [n for _, n in labelled]
        sizes = [int((lab == k).sum()) for lab, n in labelled for k in range(1, n + 1)]
        got = stats[split]
        assert got["count"] == len(stems) and got["empty"] == counts.count(0)
        assert got["foreground_fraction"]["mean"] == pytest.approx(np.mean(fractions))
        assert got["foreground_fraction"]["max"] == pytest.approx(max(fractions))
        assert got["components_per_image"]["mean"] == pytest.approx(np.mean(counts))
        assert (got["components_per_image"]["min"], got["components_per_image"]["max"]) == (
            min(counts),
            max(counts),
        )
        assert got["component_size"].get("n", 0) == len(sizes)
        if sizes:
            assert got["component_size"]["mean"] == pytest.approx(np.mean(sizes))
            assert got["component_size"]["max"] == max(sizes)
    assert stats["train"]["components_per_image"]["max"] == 25  # the 5 x 5 grid of specks in m2
    assert stats["train"]["components_per_image"]["min"] == 2  # the ring and its island; corners do not join
    assert (tmp_path / "report" / "mask_mask.png").is_file()


def test_detection_boxes_and_clip_vlm_texts(tmp_path):
    det = analyze_dataset(build_config(tiny_config("detection", tmp_path / "det")), tmp_path / "det_report")
    raw = prepare_data(build_config(tiny_config("detection", tmp_path / "det2"))).splits
    for split, rows in raw.items():
        boxes = [np.asarray(r["objects"]["bbox"], float).reshape(-1, 4) for r in rows.with_format(None)]
        got = det["boxes"]["objects.bbox"][split]
        assert got["boxes"] == sum(len(b) for b in boxes) > 0
        assert got["images_without_boxes"] == sum(len(b) == 0 for b in boxes)
        widths = np.concatenate([b[:, 2] - b[:, 0] for b in boxes])
        assert got["width"]["mean"] == pytest.approx(widths.mean())
        assert got["boxes_per_image"]["max"] == max(len(b) for b in boxes)
    clip = analyze_dataset(build_config(tiny_config("clip", tmp_path / "clip")), tmp_path / "clip_report")
    rows = (
        prepare_data(build_config(tiny_config("clip", tmp_path / "clip2"))).splits["train"].with_format(None)
    )
    captions = rows["captions"]
    got = clip["texts"]["captions"]["train"]
    assert got["per_sample"]["mean"] == pytest.approx(np.mean([len(c) for c in captions]))
    assert got["by_role"]["all"]["words"]["mean"] == pytest.approx(
        np.mean([len(t.split()) for c in captions for t in c])
    )
    vlm = analyze_dataset(build_config(tiny_config("vlm", tmp_path / "vlm")), tmp_path / "vlm_report")
    texts = vlm["texts"]["messages.content"]["test"]
    assert set(texts["by_role"]) == {"user", "assistant"} and texts["per_sample"]["min"] >= 2
    assert set(vlm["texts"]) == {"messages.content"}  # roles and answer types are codes, not prose
    assert (tmp_path / "vlm_report" / "text_messages_content.png").is_file()


def test_odd_pictures_and_unreadable_samples_are_reported_not_raised(tmp_path, monkeypatch):
    """16-bit grey, RGBA and palette files, garbage bytes, and 3-D volumes in an Array4D column."""
    from neurotrain_hf.tasks.base import TaskData

    def encoded(array: np.ndarray, **kwargs) -> dict:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG", **kwargs)
        return {"bytes": buf.getvalue(), "path": None}

    grey16 = (np.arange(16 * 16).reshape(16, 16) * 16).astype(np.uint16)  # max 4080: 12 bits used
    rgba = np.dstack([smooth(5, 16), np.full((16, 16), 200, np.uint8)])
    images = [
        encoded(grey16),
        encoded(rgba),
        {"bytes": b"not a picture", "path": "junk.png"},
        encoded(smooth(6, 16)),
    ]
    volume = np.random.default_rng(0).integers(0, 255, (10, 12, 14, 1)).astype(np.uint8)
    features = datasets.Features(
        {
            "image": datasets.Image(decode=False),
            "volume": datasets.Array4D((10, 12, 14, 1), "uint8"),
            "id": datasets.Value("string"),
        }
    )
    rows = {"image": images, "volume": [volume] * 4, "id": ["g16", "rgba", "junk", "ok"]}
    one_off = smooth(6, 16)
    one_off[-1, -1] += 1  # the last pixel differs: a near copy, not an exact one
    test_rows = {
        "image": [images[0], encoded(one_off)],
        "volume": [volume] * 2,
        "id": ["g16_again", "one_off"],
    }
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows, features),
            "test": datasets.Dataset.from_dict(test_rows, features),
        }
    )
    monkeypatch.setattr("neurotrain_hf.data.api.prepare_data", lambda cfg: TaskData(splits=splits, info=None))
    report = analyze_dataset(make_config(tmp_path), tmp_path / "odd")
    bad = report["bad_samples"]
    assert [(b["split"], b["index"], b["id"], b["column"]) for b in bad] == [("train", 2, "junk", "image")]
    train = report["images"]["image"]["train"]
    assert train["count"] == 3 and train["modes"] == {"I;16": 1, "RGBA": 1, "RGB": 1}
    assert train["bits_used"] == {"8": 2, "12": 1} and train["dtypes"] == {"uint16": 1, "uint8": 2}
    assert report["images"]["volume"]["train"]["shapes"] == {"10x12x14": 4}
    assert report["images"]["volume"]["train"]["volumes"] == 4
    assert pairs(report, "exact_pairs") == {frozenset({"g16", "g16_again"})}
    assert pairs(report, "near_pairs") == {frozenset({"ok", "one_off"})}
    assert report["duplicates"]["exact_across"] == 1  # the first image column only (not the volumes)
    assert "junk" in (tmp_path / "odd" / "dataset_report.md").read_text()
    assert re.search(r"1 unreadable sample; report: ", summary_line(report))

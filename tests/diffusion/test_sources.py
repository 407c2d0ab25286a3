"""Diffusion data as users have it: image/mask folders (upper-case extensions, a mask missing, a mask of
another size) and class folders, read through the task's prepare step."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT  # noqa: F401  (offline environment)


def config(tmp_path, dataset: dict, conditioning: str):
    from neurotrain_hf.config import build_config

    data = {
        "basic": {"task": "diffusion", "output_dir": str(tmp_path / "runs")},
        "model": {"name": "unet2d"},
        "dataset": {"image_size": 16, "valid_ratio": 0.25, "test_ratio": 0.25, **dataset},
        "training": {"conditioning": conditioning, "report_to": "none"},
    }
    return build_config(data)


def write_pairs(root, sizes, missing=()):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, size in enumerate(sizes):
        rgb = np.random.default_rng(i).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "images" / f"case{i}.PNG")
        if i not in missing:
            mask = np.zeros((size[1], size[0]), np.uint8)
            mask[: size[1] // 2] = 255
            Image.fromarray(mask).save(root / "masks" / f"case{i}.png")


def test_image_masks_reads_pairs_and_names_what_is_wrong(tmp_path):
    from neurotrain_hf.errors import NeuroTrainError
    from neurotrain_hf.tasks.diffusion.data import prepare

    write_pairs(tmp_path / "ok", [(24, 20)] * 8)
    data = prepare(config(tmp_path, {"name": "image_masks", "root": str(tmp_path / "ok")}, "mask"))
    batch = data.splits["train"][0:2]
    assert batch["pixel_values"].shape == (2, 3, 16, 16) and batch["mask"].shape == (2, 1, 16, 16)
    assert set(batch["mask"].unique().tolist()) == {-1.0, 1.0}  # resized nearest: still binary
    assert float((batch["mask"][0, 0, :8] > 0).float().mean()) == 1.0  # the top half is foreground
    assert sum(len(s) for s in data.splits.values()) == 8

    write_pairs(tmp_path / "gap", [(24, 20)] * 6, missing=(3,))
    with pytest.raises(NeuroTrainError, match=r"case3\.PNG: no mask with this name"):
        prepare(config(tmp_path, {"name": "image_masks", "root": str(tmp_path / "gap")}, "mask"))
    skipped = prepare(
        config(
            tmp_path, {"name": "image_masks", "root": str(tmp_path / "gap"), "skip_bad_samples": True}, "mask"
        )
    )
    assert skipped.report["dataset"]["skipped"] == 1 and sum(len(s) for s in skipped.splits.values()) == 5

    write_pairs(tmp_path / "sizes", [(24, 20)] * 6)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "sizes" / "masks" / "case2.png")
    data = prepare(config(tmp_path, {"name": "image_masks", "root": str(tmp_path / "sizes")}, "mask"))
    with pytest.raises(
        NeuroTrainError, match=r"case2.png: mask size \(10, 10\) differs from its image's \(20, 24\)"
    ):
        for split in data.splits.values():  # the transform checks each pair as it is read
            split[:]


def test_image_classes_reads_class_folders(tmp_path):
    from neurotrain_hf.tasks.diffusion.data import prepare

    for name in ("Normal", "Tumour"):
        folder = tmp_path / "classes" / name
        folder.mkdir(parents=True)
        for i in range(6):
            grey = np.full((20, 20), 40 if name == "Normal" else 200, np.uint8)
            Image.fromarray(grey).save(folder / f"{i}.JPG" if i % 2 else folder / f"{i}.png")
    data = prepare(config(tmp_path, {"name": "image_classes", "root": str(tmp_path / "classes")}, "class"))
    assert data.info.class_names == ["Normal", "Tumour"]
    batch = data.splits["train"][:]
    bright = batch["pixel_values"].mean(dim=(1, 2, 3)) > 0
    assert bright.tolist() == (batch["class_labels"] == 1).tolist()  # each image with its own class

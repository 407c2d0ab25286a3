"""Segmentation dataset builders on tiny fixtures written in each dataset's official layout and encodings."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

import neurotrain_hf.tasks.segmentation.sources  # noqa: F401  (registers the builders)
from neurotrain_hf.data.registry import DATASETS, DatasetSource
from neurotrain_hf.errors import DataError
from neurotrain_hf.tasks.segmentation.config import SegmentationDataset as DatasetConfig

W, H = 12, 10
COLUMNS = ["image", "mask", "fov", "id", "source"]
STRAYS = (".DS_Store", "Thumbs.db", "readme.txt", "meta.csv")


# --- fixture writers -----------------------------------------------------------------------------
def pattern(seed: int) -> np.ndarray:
    """A distinct binary mask per seed (bool, H x W)."""
    return np.random.default_rng(seed).random((H, W)) > 0.5


def rgb(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8), "RGB")


def binary(seed: int, mode: str = "L", high: int = 255) -> Image.Image:
    image = Image.fromarray(pattern(seed).astype(np.uint8) * high, "L")
    return image.convert("1") if mode == "1" else image


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def save_gz(image: Image.Image, path: Path) -> Path:
    """PPM/PGM content gzipped, as in the STARE tars."""
    buffer = io.BytesIO()
    image.save(buffer, format="PPM")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(buffer.getvalue()))
    return path


def strays(folder: Path) -> None:
    for name in STRAYS:
        (folder / name).write_bytes(b"junk")


def seed_of(key: str) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(key))


def write_drive(base: Path, test_manual: bool) -> Path:
    for folder, ids in (("training", ("21", "22", "40")), ("test", ("01", "02"))):
        for key in ids:
            save(rgb(int(key)), base / folder / "images" / f"{key}_{folder}.tif")
            save(binary(100 + int(key)), base / folder / "mask" / f"{key}_{folder}_mask.gif")
            if folder == "training" or test_manual:
                save(binary(int(key)), base / folder / "1st_manual" / f"{key}_manual1.gif")
        strays(base / folder / "images")
    for key in ("01", "02"):  # second observer, {0,1}-encoded: never used
        save(binary(500 + int(key), high=1), base / "test" / "2nd_manual" / f"{key}_manual2.gif")
    return base


def write_chase(base: Path) -> Path:
    for key in ("Image_01L", "Image_01R", "Image_11L", "Image_14R"):
        save(rgb(seed_of(key)), base / f"{key}.jpg")
        save(binary(seed_of(key), "1"), base / f"{key}_1stHO.png")
        save(binary(seed_of(key) + 1, "1"), base / f"{key}_2ndHO.png")
    strays(base)
    return base


def write_stare(base: Path) -> Path:
    for key in ("im0001", "im0044", "im0162"):
        save_gz(rgb(seed_of(key)), base / "stare-images" / f"{key}.ppm.gz")
        save_gz(binary(seed_of(key)), base / "labels-ah" / f"{key}.ah.ppm.gz")
        save_gz(binary(seed_of(key) + 1), base / "labels-vk" / f"{key}.vk.ppm.gz")
    save(rgb(1), base / "stare-images" / "im0324.ppm", format="PPM")  # already gunzipped
    save(binary(seed_of("im0324")), base / "labels-ah" / "im0324.ah.ppm", format="PPM")
    save_gz(rgb(2), base / "stare-images" / "im0010.ppm.gz")  # no vessel label: not used
    strays(base / "stare-images")
    return base


def write_hrf(base: Path) -> Path:
    for key in ("01_h", "01_g", "01_dr", "06_h", "06_dr"):
        suffix = ".JPG" if key.endswith("dr") else ".jpg"
        save(rgb(seed_of(key)), base / "images" / f"{key}{suffix}", format="JPEG")
        save(binary(seed_of(key)), base / "manual1" / f"{key}.tif")
        save(binary(seed_of(key) + 7), base / "mask" / f"{key}_mask.tif")
    strays(base / "images")
    return base


def write_isic(base: Path, layout: dict[str, tuple[str, str | None, tuple[str, ...]]], suffix: str) -> Path:
    """``layout``: split -> (input folder, ground-truth folder or None, ids)."""
    for inputs, truth, ids in layout.values():
        for key in ids:
            save(rgb(seed_of(key)), base / inputs / f"{key}.jpg")
            save(rgb(seed_of(key) + 3), base / inputs / f"{key}_superpixels.png")
            if truth is not None:
                save(binary(seed_of(key)), base / truth / f"{key}{suffix}.png")
        (base / inputs / "ISIC-2017_Training_Data_metadata.csv").write_text("image_id,age_approximate,sex\n")
        strays(base / inputs)
    return base


ISIC2018 = {
    "train": (
        "ISIC2018_Task1-2_Training_Input",
        "ISIC2018_Task1_Training_GroundTruth",
        ("ISIC_0000001", "ISIC_0000000"),
    ),
    "valid": (
        "ISIC2018_Task1-2_Validation_Input",
        "ISIC2018_Task1_Validation_GroundTruth",
        ("ISIC_0012255",),
    ),
    "test": ("ISIC2018_Task1-2_Test_Input", None, ("ISIC_0012169", "ISIC_0012170")),
}
ISIC2017 = {
    "train": (
        "ISIC-2017_Training_Data",
        "ISIC-2017_Training_Part1_GroundTruth",
        ("ISIC_0000000", "ISIC_0000002"),
    ),
    "valid": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth", ("ISIC_0001769",)),
    "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth", ("ISIC_0012086",)),
}
ISIC2016 = {
    "train": (
        "ISBI2016_ISIC_Part1_Training_Data",
        "ISBI2016_ISIC_Part1_Training_GroundTruth",
        ("ISIC_0000000",),
    ),
    "test": ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth", ("ISIC_0000003",)),
}


# --- helpers -------------------------------------------------------------------------------------
def build(name: str, root: Path | str | None = None, **kwargs) -> DatasetSource:
    cfg = DatasetConfig(name=name, root=None if root is None else str(root), **kwargs)
    return DATASETS.get(name)(cfg)


def pixels(value: dict) -> np.ndarray:
    """Foreground of a stored ``Image(decode=False)`` value, opened the way a loader would."""
    data = io.BytesIO(value["bytes"]) if value["bytes"] is not None else value["path"]
    with Image.open(data) as image:
        return np.asarray(image.convert("L")) > 0


def check(source: DatasetSource, name: str, expected: dict[str, list[str]]) -> datasets.DatasetDict:
    """Splits, columns, features, ids (sorted), source name, absolute paths; no second observer used."""
    splits = source.splits
    assert list(splits) == list(expected)
    assert source.label_column == "mask"
    for split, ids in expected.items():
        ds = splits[split]
        assert ds.column_names == COLUMNS
        assert all(
            isinstance(ds.features[c], datasets.Image) and not ds.features[c].decode for c in COLUMNS[:3]
        )
        assert ds["id"] == ids
        assert set(ds["source"]) == {name}
        for row in ds:
            if row["image"]["bytes"] is None:  # files on disk are referenced by absolute path
                assert Path(row["image"]["path"]).is_absolute()
            if row["mask"] is not None:
                path = row["mask"]["path"] or ""
                assert not any(tag in path for tag in ("2nd", "2ndHO", ".vk.", "manual2"))
    return splits


# --- DRIVE ---------------------------------------------------------------------------------------
def test_drive_official_tree_without_test_labels(tmp_path):
    write_drive(tmp_path / "DRIVE", test_manual=False)
    splits = check(
        build("drive", tmp_path / "DRIVE"), "drive", {"train": ["21", "22", "40"], "test": ["01", "02"]}
    )
    train, test = splits["train"], splits["test"]
    assert train[0]["image"] == {
        "bytes": None,
        "path": str(tmp_path / "DRIVE/training/images/21_training.tif"),
    }
    for row in train:
        assert row["mask"]["path"].endswith(f"1st_manual/{row['id']}_manual1.gif")
        assert (pixels(row["mask"]) == pattern(int(row["id"]))).all()
        assert (pixels(row["fov"]) == pattern(100 + int(row["id"]))).all()
    assert test["mask"] == [None, None]
    assert (pixels(test[1]["fov"]) == pattern(102)).all()
    # the parent folder of the extracted DRIVE/ works too
    assert build("drive", tmp_path).splits["train"]["id"] == ["21", "22", "40"]


def test_drive_test_labels_when_present(tmp_path):
    write_drive(tmp_path, test_manual=True)
    test = check(build("drive", tmp_path), "drive", {"train": ["21", "22", "40"], "test": ["01", "02"]})[
        "test"
    ]
    for row in test:
        assert row["mask"]["path"].endswith(f"test/1st_manual/{row['id']}_manual1.gif")
        assert (pixels(row["mask"]) == pattern(int(row["id"]))).all()


def test_drive_errors(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        build("drive", tmp_path / "nope")
    (tmp_path / "junk").mkdir()
    with pytest.raises(
        DataError, match=r"not in the official layout; expected training/images/\*_training.tif"
    ):
        build("drive", tmp_path / "junk")
    with pytest.raises(DataError, match="set root"):
        build("drive")
    root = write_drive(tmp_path / "d", test_manual=True)
    (root / "test/1st_manual/02_manual1.gif").unlink()
    with pytest.raises(
        DataError, match=r"02_test.tif has no mask; expected .*test/1st_manual/02_manual1.gif"
    ):
        build("drive", root)
    save(binary(0), root / "test/1st_manual/02_manual1.gif")
    save(binary(0), root / "training/1st_manual/30_manual1.gif")
    with pytest.raises(
        DataError, match=r"30_manual1.gif has no image; expected .*training/images/30_training.tif"
    ):
        build("drive", root)
    (root / "training/1st_manual/30_manual1.gif").unlink()
    (root / "training/mask/22_training_mask.gif").unlink()
    with pytest.raises(DataError, match=r"22_training.tif has no fov; expected .*22_training_mask.gif"):
        build("drive", root)


# --- CHASE_DB1 -----------------------------------------------------------------------------------
def test_chase_db1(tmp_path):
    write_chase(tmp_path / "CHASEDB1")
    expected = {"train": ["Image_01L", "Image_01R"], "test": ["Image_11L", "Image_14R"]}
    splits = check(build("chase_db1", tmp_path / "CHASEDB1"), "chase_db1", expected)
    for row in [*splits["train"], *splits["test"]]:
        assert row["mask"]["path"].endswith(f"{row['id']}_1stHO.png")
        assert (pixels(row["mask"]) == pattern(seed_of(row["id"]))).all()
        assert row["fov"] is None
    assert build("chase_db1", tmp_path).splits["test"]["id"] == expected["test"]  # extraction root


def test_chase_db1_errors(tmp_path):
    root = write_chase(tmp_path)
    (root / "Image_11L_1stHO.png").unlink()
    with pytest.raises(DataError, match=r"Image_11L.jpg has no mask; expected .*Image_11L_1stHO.png"):
        build("chase_db1", root)
    (root / "Image_11L.jpg").unlink()
    (root / "Image_11L_2ndHO.png").unlink()
    build("chase_db1", root)  # a complete set again
    save(binary(0, "1"), root / "Image_12R_1stHO.png")
    with pytest.raises(DataError, match=r"Image_12R_1stHO.png has no image; expected .*Image_12R.jpg"):
        build("chase_db1", root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="expected Image_01L.jpg"):
        build("chase_db1", tmp_path / "empty")


# --- STARE ---------------------------------------------------------------------------------------
def test_stare_gzipped_and_plain(tmp_path):
    root = write_stare(tmp_path)
    expected = {"train": ["im0001", "im0044"], "test": ["im0162", "im0324"]}
    splits = check(build("stare", root), "stare", expected)
    gz = splits["train"][0]
    assert gz["image"]["path"] == str(root / "stare-images/im0001.ppm.gz")
    with Image.open(io.BytesIO(gz["image"]["bytes"])) as image:
        assert image.size == (W, H) and image.mode == "RGB"
        assert (np.asarray(image) == np.asarray(rgb(seed_of("im0001")))).all()
    assert gz["mask"]["path"].endswith("labels-ah/im0001.ah.ppm.gz")
    decoded = splits["train"].cast_column("image", datasets.Image()).cast_column("mask", datasets.Image())[1]
    assert (
        decoded["image"].size == (W, H)
        and (np.asarray(decoded["mask"]) > 0).sum() == pattern(seed_of("im0044")).sum()
    )
    plain = splits["test"][1]
    assert plain["image"] == {"bytes": None, "path": str(root / "stare-images/im0324.ppm")}
    for row in [*splits["train"], *splits["test"]]:
        assert ".ah." in row["mask"]["path"] and row["fov"] is None
        assert (pixels(row["mask"]) == pattern(seed_of(row["id"]))).all()


def test_stare_prefers_gunzipped_copy_and_errors(tmp_path):
    root = write_stare(tmp_path)
    save(rgb(3), root / "stare-images" / "im0001.ppm", format="PPM")  # `gunzip -k` leaves both
    row = build("stare", root).splits["train"][0]
    assert row["image"] == {"bytes": None, "path": str(root / "stare-images/im0001.ppm")}
    save_gz(binary(0), root / "labels-ah" / "im0005.ah.ppm.gz")
    with pytest.raises(DataError, match=r"im0005.ah.ppm.gz has no image; expected .*im0005.ppm.gz"):
        build("stare", root)
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match=r"expected im0001.ppm.gz"):
        build("stare", tmp_path / "other")


# --- HRF -----------------------------------------------------------------------------------------
def test_hrf_upper_case_jpg(tmp_path):
    root = write_hrf(tmp_path)
    expected = {"train": ["01_dr", "01_g", "01_h"], "test": ["06_dr", "06_h"]}
    splits = check(build("hrf", root), "hrf", expected)
    assert splits["train"][0]["image"]["path"] == str(root / "images/01_dr.JPG")
    for row in [*splits["train"], *splits["test"]]:
        assert (pixels(row["mask"]) == pattern(seed_of(row["id"]))).all()
        assert (pixels(row["fov"]) == pattern(seed_of(row["id"]) + 7)).all()


def test_hrf_errors(tmp_path):
    root = write_hrf(tmp_path)
    (root / "mask/06_dr_mask.tif").unlink()
    with pytest.raises(DataError, match=r"06_dr.JPG has no fov; expected .*mask/06_dr_mask.tif"):
        build("hrf", root)
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match=r"expected images/01_h.jpg, manual1/01_h.tif"):
        build("hrf", tmp_path / "flat")


# --- ISIC ----------------------------------------------------------------------------------------
def test_isic2018_splits_and_missing_test_truth(tmp_path):
    root = write_isic(tmp_path, ISIC2018, "_segmentation")
    expected = {
        "train": ["ISIC_0000000", "ISIC_0000001"],
        "valid": ["ISIC_0012255"],
        "test": ["ISIC_0012169", "ISIC_0012170"],
    }
    splits = check(build("isic2018", root), "isic2018", expected)
    for row in [*splits["train"], *splits["valid"]]:
        assert row["image"]["path"].endswith(f"{row['id']}.jpg")
        assert row["mask"]["path"].endswith(f"{row['id']}_segmentation.png")
        assert (pixels(row["mask"]) == pattern(seed_of(row["id"]))).all()
        assert row["fov"] is None
    assert splits["test"]["mask"] == [None, None]


def test_isic2017_capital_segmentation_superpixels_and_csv_ignored(tmp_path):
    write_isic(tmp_path / "isic", ISIC2017, "_Segmentation")
    expected = {
        "train": ["ISIC_0000000", "ISIC_0000002"],
        "valid": ["ISIC_0001769"],
        "test": ["ISIC_0012086"],
    }
    splits = check(build("isic2017", tmp_path), "isic2017", expected)  # parent of the extracted folders
    for row in [*splits["train"], *splits["valid"], *splits["test"]]:
        assert "superpixels" not in row["image"]["path"]
        assert row["mask"]["path"].endswith("_Segmentation.png")
        assert (pixels(row["mask"]) == pattern(seed_of(row["id"]))).all()


def test_isic2016_and_errors(tmp_path):
    root = write_isic(tmp_path, ISIC2016, "_Segmentation")
    check(build("isic2016", root), "isic2016", {"train": ["ISIC_0000000"], "test": ["ISIC_0000003"]})
    save(rgb(0), root / ISIC2016["train"][0] / "ISIC_0000001.jpg")
    with pytest.raises(
        DataError, match=r"ISIC_0000001.jpg has no mask; expected .*ISIC_0000001_segmentation.png"
    ):
        build("isic2016", root)
    with pytest.raises(DataError, match=r"expected ISIC2018_Task1-2_Training_Input/ISIC_\*.jpg"):
        build("isic2018", root)
    (root / ISIC2016["train"][0] / "ISIC_0000001.jpg").unlink()
    for path in (root / ISIC2016["test"][0]).iterdir():
        path.unlink()
    (root / ISIC2016["test"][0]).rmdir()
    with pytest.raises(DataError, match=r"Test_GroundTruth has no images; expected .*Test_Data/ISIC_\*.jpg"):
        build("isic2016", root)


# --- generic folders and Hub datasets ------------------------------------------------------------
def test_segmentation_folder_flat_with_suffixes_and_fovs(tmp_path):
    save(rgb(1), tmp_path / "images" / "a.png")
    save(rgb(2), tmp_path / "images" / "b.JPG", format="JPEG")
    save(rgb(3), tmp_path / "images" / "c.tiff")
    save(binary(1), tmp_path / "masks" / "a.png")
    save(binary(2), tmp_path / "masks" / "b_mask.PNG", format="PNG")
    save(binary(3), tmp_path / "masks" / "c_segmentation.gif")
    save(binary(4), tmp_path / "fovs" / "a_fov.png")
    save(binary(5), tmp_path / "fovs" / "b.png")
    save(binary(6), tmp_path / "fovs" / "c_mask.png")
    strays(tmp_path / "images")
    strays(tmp_path / "masks")
    train = check(build("segmentation_folder", tmp_path), "segmentation_folder", {"train": ["a", "b", "c"]})[
        "train"
    ]
    for i, row in enumerate(train):
        assert (pixels(row["mask"]) == pattern(i + 1)).all()
        assert (pixels(row["fov"]) == pattern(i + 4)).all()


def test_segmentation_folder_splits_and_errors(tmp_path):
    for split, keys in (("training", ("x1", "x2")), ("val", ("v1",)), ("test", ("t1",))):
        for i, key in enumerate(keys):
            save(rgb(i), tmp_path / split / "images" / f"{key}.png")
            if split != "test":
                save(binary(i), tmp_path / split / "masks" / f"{key}_label.png")
    expected = {"train": ["x1", "x2"], "valid": ["v1"], "test": ["t1"]}
    splits = check(build("segmentation_folder", tmp_path), "segmentation_folder", expected)
    assert splits["test"]["mask"] == [None] and splits["test"]["fov"] == [None]
    save(binary(9), tmp_path / "training" / "masks" / "x3_mask.png")
    with pytest.raises(DataError, match=r"x3_mask.png has no image; expected .*training/images/x3\."):
        build("segmentation_folder", tmp_path)
    save(rgb(9), tmp_path / "val" / "images" / "v2.png")
    (tmp_path / "training" / "masks" / "x3_mask.png").unlink()
    with pytest.raises(DataError, match=r"v2.png has no mask"):
        build("segmentation_folder", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"expected images/ and masks/"):
        build("segmentation_folder", tmp_path / "empty")


def test_segmentation_hub_local_dataset(tmp_path):
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.Image(), "extra": datasets.Value("int32")}
    )
    data = {"image": [rgb(0), rgb(1)], "label": [binary(0), binary(1)], "extra": [5, 6]}
    path = tmp_path / "hub"
    test = datasets.Dataset.from_dict({"image": [rgb(2)], "extra": [7]})
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(data, features=features), "validation": test}
    ).save_to_disk(str(path))
    source = build("segmentation_hub", hub_id=str(path))
    splits = check(source, str(path), {"train": ["0", "1"], "valid": ["0"]})
    for i, row in enumerate(splits["train"]):
        assert (pixels(row["mask"]) == pattern(i)).all()
        assert row["fov"] is None
    assert splits["valid"]["mask"] == [None]
    assert build("segmentation_hub", root=path).splits["train"]["source"] == [str(path)] * 2  # root works too
    with pytest.raises(DataError, match=r"train has no column 'seg'.*set label_column"):
        build("segmentation_hub", hub_id=str(path), label_column="seg")

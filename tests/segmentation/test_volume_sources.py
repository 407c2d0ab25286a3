"""Volumetric dataset builders (BTCV/Synapse, BraTS 2021 / 2023 GLI, MSD) on tiny official-layout fixtures."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

import neurotrain_hf.tasks.segmentation.volume_sources  # noqa: F401  (registers the builders)
from neurotrain_hf.data.registry import DATASETS, DatasetSource
from neurotrain_hf.errors import DataError
from neurotrain_hf.tasks.segmentation.config import SegmentationDataset as DatasetConfig
from neurotrain_hf.tasks.segmentation.volume_spec import VolumeSpec

from .volume_fixtures import save, write_brats, write_btcv, write_msd_brain, write_msd_spleen

COLUMNS = ["image", "mask", "id", "source"]


def build(name: str, root: Path, **kwargs) -> DatasetSource:
    return DATASETS.get(name)(DatasetConfig(name=name, root=str(root), **kwargs))


def ids(source: DatasetSource) -> dict[str, list[str]]:
    return {split: list(ds["id"]) for split, ds in source.splits.items()}


def fails(name: str, root: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        build(name, root, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"[dataset] {name}: ")
    return message


# --- BTCV ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def btcv_raw(tmp_path_factory) -> Path:
    return write_btcv(tmp_path_factory.mktemp("btcv_raw"), cases=("0001", "0002", "0021", "0035", "0036"))


def test_btcv_raw_layout_embedded_split(btcv_raw, caplog):
    caplog.set_level(logging.WARNING)
    for root in (btcv_raw, btcv_raw.parent):  # RawData or its parent
        source = build("btcv", root)
        assert ids(source) == {"train": ["img0001", "img0002", "img0021"], "valid": ["img0035", "img0036"]}
        train = source.splits["train"]
        assert train.column_names == COLUMNS and set(train["source"]) == {"btcv"}
        row = train[0]
        assert row["image"] == [str(btcv_raw / "Training" / "img" / "img0001.nii.gz")]
        assert row["mask"] == str(btcv_raw / "Training" / "label" / "label0001.nii.gz")
        assert Path(row["image"][0]).is_absolute() and Path(row["mask"]).is_file()
        spec = source.volume
        assert isinstance(spec, VolumeSpec) and spec.modality == "CT" and spec.num_labels == 14
        assert spec.label_names[0] == "background" and spec.label_names[13] == "left adrenal gland"
        assert spec.label_names[10] == "portal and splenic vein" and source.skipped == []
    assert "img0061" not in str(ids(source))  # Testing/img has no labels: never used


def test_btcv_unlisted_case_left_out_with_warning(tmp_path, caplog):
    root = write_btcv(tmp_path, cases=("0001", "0035", "0050"), testing=())
    with caplog.at_level(logging.WARNING):
        source = build("btcv", root)
    assert ids(source) == {"train": ["img0001"], "valid": ["img0035"]}
    assert "0050" in caplog.text


def test_btcv_only_train_cases_gives_no_valid_split(tmp_path):
    source = build("btcv", write_btcv(tmp_path, cases=("0003", "0004"), testing=()))
    assert ids(source) == {"train": ["img0003", "img0004"]}


def test_synapse_alias(btcv_raw):
    source = build("synapse", btcv_raw)
    assert set(source.splits["train"]["source"]) == {"synapse"}
    assert ids(source)["valid"] == ["img0035", "img0036"]


def test_btcv_monai_layout_dataset_0_json(tmp_path):
    root = write_btcv(tmp_path, cases=("0001", "0021", "0035"), layout="monai")
    source = build("btcv", root)
    assert ids(source) == {"train": ["img0001", "img0021"], "valid": ["img0035"]}  # unlabelled test dropped
    assert source.splits["valid"][0]["mask"] == str(root / "labelsTr" / "label0035.nii.gz")


def test_btcv_monai_layout_without_json_uses_embedded_split(tmp_path):
    root = write_btcv(tmp_path, cases=("0002", "0040"), layout="monai", dataset_json=False)
    assert ids(build("btcv", root)) == {"train": ["img0002"], "valid": ["img0040"]}


def test_btcv_split_file_overrides_dataset_0_json(tmp_path):
    root = write_btcv(tmp_path, cases=("0001", "0002", "0021", "0035"), layout="monai")
    split = {
        "training": [{"image": "./imagesTr/img0035.nii.gz", "label": "./labelsTr/label0035.nii.gz"}],
        "validation": [{"image": "imagesTr/img0001.nii.gz", "label": "labelsTr/label0001.nii.gz"}],
        "test": [
            {"image": "imagesTr/img0002.nii.gz", "label": "labelsTr/label0002.nii.gz"},
            "imagesTs/img0061.nii.gz",  # unlabelled: ignored
        ],
    }
    (root / "my_split.json").write_text(json.dumps(split))
    source = build("btcv", root, split_file="my_split.json")  # relative to root
    assert ids(source) == {"train": ["img0035"], "valid": ["img0001"], "test": ["img0002"]}
    source = build("btcv", root, split_file=str(root / "my_split.json"))
    assert ids(source)["test"] == ["img0002"]


def test_btcv_split_file_on_raw_layout_and_missing_entry(tmp_path, btcv_raw):
    split = {
        "training": [{"image": "Training/img/img0001.nii.gz", "label": "Training/label/label0001.nii.gz"}]
    }
    split["validation"] = [
        {"image": "Training/img/img0009.nii.gz", "label": "Training/label/label0009.nii.gz"}
    ]
    path = tmp_path / "split.json"
    path.write_text(json.dumps(split))
    message = fails("btcv", btcv_raw, split_file=str(path))
    assert "img0009.nii.gz" in message and "not found" in message
    source = build("btcv", btcv_raw, split_file=str(path), skip_bad_samples=True)
    assert ids(source) == {"train": ["img0001"]}
    assert source.skipped == [str(btcv_raw / "Training" / "img" / "img0009.nii.gz")]
    assert "split_file" in fails("btcv", btcv_raw, split_file=str(tmp_path / "nope.json"))


def test_btcv_missing_label_and_extensions(tmp_path):
    root = write_btcv(tmp_path, cases=("0001", "0002", "0003"), testing=(), ext=".NII.GZ")
    (root / "Training" / "label" / "label0002.NII.GZ").unlink()
    message = fails("btcv", root)
    assert "img0002.NII.GZ: has no label" in message and "label0002.nii.gz" in message
    source = build("btcv", root, skip_bad_samples=True)
    assert ids(source) == {"train": ["img0001", "img0003"]} and len(source.skipped) == 1
    plain = write_btcv(tmp_path / "plain", cases=("0004",), testing=(), ext=".nii")
    assert build("btcv", plain).splits["train"][0]["image"][0].endswith("img0004.nii")


def test_btcv_wrong_layout_errors(tmp_path):
    assert "folder not found" in fails("btcv", tmp_path / "missing")
    (tmp_path / "Abdomen" / "averaged-training-images").mkdir(parents=True)
    message = fails("btcv", tmp_path / "Abdomen")
    assert str(tmp_path / "Abdomen") in message and "Training/img/img0001.nii.gz" in message
    assert "imagesTr/img0001.nii.gz" in message
    with pytest.raises(DataError, match="set root"):
        DATASETS.get("btcv")(DatasetConfig(name="btcv"))


# --- BraTS ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brats21(tmp_path_factory) -> Path:
    return write_brats(tmp_path_factory.mktemp("brats21"), edition=2021, cases=3)


@pytest.fixture(scope="module")
def brats23(tmp_path_factory) -> Path:
    return write_brats(tmp_path_factory.mktemp("brats23"), edition=2023, cases=2)


def test_brats_2021(brats21):
    source = build("brats", brats21)
    assert ids(source) == {"train": ["BraTS2021_00000", "BraTS2021_00002", "BraTS2021_00003"]}
    row = source.splits["train"][0]
    case = brats21 / "BraTS2021_00000"
    assert row["image"] == [str(case / f"BraTS2021_00000_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair")]
    assert row["mask"] == str(case / "BraTS2021_00000_seg.nii.gz") and row["source"] == "brats"
    spec = source.volume
    assert spec.channel_names == ["t1", "t1ce", "t2", "flair"] and spec.modality == "MR"
    assert spec.label_map == {0: 0, 1: 1, 2: 2, 4: 3} and spec.raw_values() == {0, 1, 2, 4}
    assert spec.label_names == ["background", "necrotic core", "edema", "enhancing tumor"]
    assert spec.regions == {"ET": [3], "TC": [1, 3], "WT": [1, 2, 3]}
    assert (case / ".DS_Store").is_file() and (brats21 / ".DS_Store").is_file()  # present, ignored


def test_brats_2023_and_aliases(brats23, brats21):
    source = build("brats", brats23)
    assert ids(source) == {"train": ["BraTS-GLI-00000-000", "BraTS-GLI-00002-000"]}
    case = brats23 / "BraTS-GLI-00000-000"
    expected = [str(case / f"BraTS-GLI-00000-000-{m}.nii.gz") for m in ("t1n", "t1c", "t2w", "t2f")]
    assert source.splits["train"][0]["image"] == expected
    assert source.volume.raw_values() == {0, 1, 2, 3} and source.volume.lookup() == [0, 1, 2, 3]
    assert source.volume.channel_names == ["t1", "t1ce", "t2", "flair"]
    assert set(build("brats2023", brats23).splits["train"]["source"]) == {"brats2023"}
    assert build("brats2021", brats21).volume.label_map[4] == 3
    message = fails("brats2021", brats23)
    assert "BraTS 2023" in message and "brats2023" in message
    assert "BraTS 2021" in fails("brats2023", brats21)


def test_brats_parent_folder_root(brats21, tmp_path):
    assert ids(build("brats", brats21.parent))["train"][0] == "BraTS2021_00000"
    write_brats(tmp_path, edition=2021, cases=1)
    write_brats(tmp_path, edition=2023, cases=1)
    message = fails("brats", tmp_path)  # two release folders: ambiguous
    assert "set root to one" in message and "RSNA_ASNR_MICCAI_BraTS2021" in message


def test_brats_missing_modality_error_and_skip(tmp_path):
    base = write_brats(tmp_path, edition=2021, cases=3)
    (base / "BraTS2021_00000" / "BraTS2021_00000_t1ce.nii.gz").unlink()
    message = fails("brats", base)
    assert message.endswith(f"{base / 'BraTS2021_00000'}: missing BraTS2021_00000_t1ce.nii.gz")
    source = build("brats", base, skip_bad_samples=True)
    assert ids(source) == {"train": ["BraTS2021_00002", "BraTS2021_00003"]}
    assert source.skipped == [str(base / "BraTS2021_00000")]


def test_brats_missing_seg(tmp_path):
    base = write_brats(tmp_path / "val", edition=2023, cases=2, with_seg=False)
    assert "no labelled cases" in fails("brats", base)
    base = write_brats(tmp_path / "mixed", edition=2021, cases=2)
    (base / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz").unlink()
    assert "missing BraTS2021_00002_seg.nii.gz" in fails("brats", base)
    assert ids(build("brats", base, skip_bad_samples=True)) == {"train": ["BraTS2021_00000"]}


def test_brats_split_file(brats21, tmp_path):
    case = "RSNA_ASNR_MICCAI_BraTS2021_TrainingData_16July2021/BraTS2021_00003/BraTS2021_00003"
    split = {
        "training": ["BraTS2021_00000", {"image": "BraTS2021_00002"}],
        "validation": [
            {  # Swin-UNETR style entry: paths relative to the release folder's parent, any channel order
                "image": [
                    f"{case}_flair.nii.gz",
                    f"{case}_t1ce.nii.gz",
                    f"{case}_t1.nii.gz",
                    f"{case}_t2.nii.gz",
                ],
                "label": f"{case}_seg.nii.gz",
            }
        ],
    }
    path = tmp_path / "folds.json"
    path.write_text(json.dumps(split))
    source = build("brats", brats21, split_file=str(path))
    assert ids(source) == {"train": ["BraTS2021_00000", "BraTS2021_00002"], "valid": ["BraTS2021_00003"]}
    image = source.splits["valid"][0]["image"]
    assert [Path(p).name.split("_")[-1] for p in image] == [
        "t1.nii.gz",
        "t1ce.nii.gz",
        "t2.nii.gz",
        "flair.nii.gz",
    ]
    path.write_text(json.dumps({"training": ["BraTS2021_00000"], "validation": ["BraTS2021_09999"]}))
    assert "BraTS2021_09999: case folder listed in folds.json not found" in fails(
        "brats", brats21, split_file=str(path)
    )


def test_brats_wrong_layout(tmp_path):
    (tmp_path / "data" / "patient1").mkdir(parents=True)
    message = fails("brats", tmp_path / "data")
    assert str(tmp_path / "data") in message and "BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz" in message


# --- MSD -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spleen(tmp_path_factory) -> Path:
    return write_msd_spleen(tmp_path_factory.mktemp("msd"), cases=6)


def test_msd_spleen(spleen):
    assert (spleen / "imagesTr" / "._spleen_2.nii.gz").is_file()  # AppleDouble junk from the tar
    assert json.loads((spleen / "dataset.json").read_text())["training"][0]["image"].startswith("./")
    for root in (spleen, spleen.parent):
        source = build("msd", root)
        assert ids(source) == {
            "train": ["spleen_10", "spleen_2", "spleen_3", "spleen_6", "spleen_8", "spleen_9"]
        }
        row = source.splits["train"][1]
        assert row["image"] == [str(spleen / "imagesTr" / "spleen_2.nii.gz")]
        assert row["mask"] == str(spleen / "labelsTr" / "spleen_2.nii.gz") and row["source"] == "msd"
        spec = source.volume
        assert spec.label_names == ["background", "spleen"] and spec.modality == "CT"
        assert spec.channel_names == ["CT"] and spec.label_map == {}


def test_msd_without_dataset_json_pairs_files(tmp_path):
    base = write_msd_spleen(tmp_path, cases=3, dataset_json=False)
    source = build("msd", base)
    assert ids(source) == {"train": ["spleen_2", "spleen_3", "spleen_6"]}  # ._spleen_2 skipped
    assert source.volume.label_names == ["background", "spleen"]
    renamed = base.rename(tmp_path / "MySpleen")
    assert "dataset.json not found" in fails("msd", renamed)


def test_msd_multimodal_4d(tmp_path):
    base = write_msd_brain(tmp_path, cases=2)
    source = build("msd", base)
    assert ids(source) == {"train": ["BRATS_001", "BRATS_002"]}
    assert source.splits["train"][0]["image"] == [str(base / "imagesTr" / "BRATS_001.nii.gz")]
    spec = source.volume
    assert spec.channel_names == ["FLAIR", "T1w", "t1gd", "T2w"] and spec.modality == "MR"
    assert spec.label_names == ["background", "edema", "non-enhancing tumor", "enhancing tumour"]


def test_msd_missing_listed_file(tmp_path):
    base = write_msd_spleen(tmp_path, cases=3)
    (base / "labelsTr" / "spleen_3.nii.gz").unlink()
    message = fails("msd", base)
    assert str(base / "labelsTr" / "spleen_3.nii.gz") in message and "dataset.json" in message
    source = build("msd", base, skip_bad_samples=True)
    assert ids(source) == {"train": ["spleen_2", "spleen_6"]}
    assert source.skipped == [str(base / "labelsTr" / "spleen_3.nii.gz")]


def test_msd_split_file(spleen, tmp_path):
    entry = {"image": "./imagesTr/spleen_{n}.nii.gz", "label": "./labelsTr/spleen_{n}.nii.gz"}
    split = {
        "training": [{k: v.format(n=n) for k, v in entry.items()} for n in (2, 3, 6)],
        "validation": [{k: v.format(n=10) for k, v in entry.items()}],
    }
    path = tmp_path / "split.json"
    path.write_text(json.dumps(split))
    source = build("msd", spleen, split_file=str(path))
    assert ids(source) == {"train": ["spleen_2", "spleen_3", "spleen_6"], "valid": ["spleen_10"]}
    split["validation"] = split["training"][:1]
    path.write_text(json.dumps(split))
    assert "listed twice" in fails("msd", spleen, split_file=str(path))


def test_msd_wrong_layout_and_bad_json(tmp_path, spleen):
    (tmp_path / "empty").mkdir()
    message = fails("msd", tmp_path / "empty")
    assert str(tmp_path / "empty") in message and "dataset.json, imagesTr/" in message
    copy = tmp_path / "Task09_Spleen"
    shutil.copytree(spleen, copy)
    (copy / "dataset.json").write_text("{not json")
    assert "not a readable json file" in fails("msd", copy)


def test_fixture_volumes_are_readable(tmp_path):
    import nibabel as nib
    import numpy as np

    root = write_btcv(tmp_path, cases=("0001",), testing=())
    image = nib.load(root / "Training" / "img" / "img0001.nii.gz")
    label = np.asarray(nib.load(root / "Training" / "label" / "label0001.nii.gz").dataobj)
    assert image.header.get_zooms() == pytest.approx((0.8, 0.8, 3.0)) and image.get_data_dtype() == np.int16
    data = np.asarray(image.dataobj)
    assert data[label > 0].mean() > data[label == 0].mean()  # organs are brighter than the rest
    assert set(np.unique(label)) <= set(range(14))
    save(np.zeros((2, 2, 2), np.uint8), np.eye(4), tmp_path / "x.nii")
    assert (tmp_path / "x.nii").is_file()

"""Image-caption builders on tiny fixtures in each official layout: every layout gives the same rows."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import datasets
import pytest
from PIL import Image

from neurotrain_hf.data.registry import DATASETS, DatasetSource
from neurotrain_hf.errors import DataError
from neurotrain_hf.tasks.clip.config import ClipDataset as DatasetConfig
from neurotrain_hf.tasks.clip.sources import FEATURES

# four images by COCO/Flickr id: raw captions (case, trailing space, quotes and commas kept) and split
CAPTIONS = {
    "139": [
        "A man riding a horse on the beach.",
        "a MAN on a horse",
        "Horse and rider near the sea ",
        'The "brown" horse, galloping',
        "a person on horseback",
    ],
    "285": [
        "A bear in the grass.",
        "big brown bear",
        "A Bear sitting",
        "bear looking at the camera",
        "a large bear",
    ],
    "632": [
        "A bedroom with a bed.",
        "bed and window",
        "A neat room ",
        "white sheets on a bed",
        "a bedroom, lit by the sun",
        "Sixth caption here.",
    ],
    "724": [
        "A stop sign.",
        "red STOP sign on a pole",
        "a street sign",
        "stop sign by the road",
        "A sign at a corner",
    ],
}
SPLIT = {"139": "train", "285": "train", "632": "valid", "724": "test"}
MISSING = "285"  # listed with captions, absent on disk: kept, reported later by the caller's image scan
KARPATHY_SPLIT = {"139": "train", "285": "restval", "632": "val", "724": "test"}


# --- fixture writers -----------------------------------------------------------------------------
def image(path: Path, key: str) -> None:
    """A tiny image at ``path`` (nothing for the missing one)."""
    if key == MISSING:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new("RGB", (6, 4), (int(key) % 256, 40, 90)).save(path, format=fmt)


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def coco2017(root: Path) -> Path:
    """``annotations/captions_{train,val}2017.json`` + ``train2017/``, ``val2017/`` (valid and test in val)."""
    ann_id = 0
    for part, keys in (("train2017", ["139", "285"]), ("val2017", ["632", "724"])):
        images, annotations = [], []
        for key in keys:
            name = f"{int(key):012d}.jpg"
            images.append({"id": int(key), "file_name": name, "width": 6, "height": 4, "license": 1})
            image(root / part / (name[:-3] + "JPG" if key == "139" else name), key)  # 139 upper case on disk
            for caption in CAPTIONS[key]:
                ann_id += 1
                annotations.append({"image_id": int(key), "id": ann_id, "caption": caption})
        if part == "train2017":  # an image without captions is left out
            images.append({"id": 800, "file_name": "000000000800.jpg", "width": 6, "height": 4})
            image(root / part / "000000000800.jpg", "800")
        data = {"info": {}, "licenses": [], "images": images, "annotations": annotations}
        write_json(root / "annotations" / f"captions_{part}.json", data)
    return root


def karpathy_images(keys: list[str], entry) -> list[dict]:
    out, sentid = [], 0
    for imgid, key in enumerate(keys):
        sentences = []
        for raw in CAPTIONS[key]:
            sentences.append({"tokens": raw.lower().split(), "raw": raw, "imgid": imgid, "sentid": sentid})
            sentid += 1
        item = {"imgid": imgid, "split": KARPATHY_SPLIT[key], "sentences": sentences}
        item["sentids"] = [s["sentid"] for s in sentences]
        out.append({**entry(key), **item})
    return out


def karpathy_coco(root: Path) -> Path:
    """``dataset_coco.json`` with 2014 names; image 724 exists only under its 2017 name (mapped by id)."""

    def entry(key: str) -> dict:
        folder = "train2014" if key == "139" else "val2014"
        return {"filepath": folder, "filename": f"COCO_{folder}_{int(key):012d}.jpg", "cocoid": int(key)}

    for key in ("139", "285", "632"):
        info = entry(key)
        image(root / info["filepath"] / info["filename"], key)
    image(root / "val2017" / "000000000724.jpg", "724")
    write_json(
        root / "annotations" / "dataset_coco.json",
        {"dataset": "coco", "images": karpathy_images(list(CAPTIONS), entry)},
    )
    return root


def flickr_images(folder: Path) -> None:
    for key in CAPTIONS:
        image(folder / (f"{key}.JPG" if key == "139" else f"{key}.jpg"), key)  # 139 upper case on disk


def karpathy_flickr(root: Path) -> Path:
    flickr_images(root / "flickr30k-images")
    images = karpathy_images(list(CAPTIONS), lambda key: {"filename": f"{key}.jpg"})
    write_json(root / "dataset_flickr30k.json", {"dataset": "flickr30k", "images": images})
    return root


def flickr_token(root: Path) -> Path:
    flickr_images(root / "flickr30k-images")
    lines = [f"{key}.jpg#{n}\t{caption}" for key, caps in CAPTIONS.items() for n, caption in enumerate(caps)]
    (root / "results_20130124.token").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def flickr_kaggle(root: Path) -> Path:
    """Kaggle's ``flickr30k_images/results.csv`` ("| "-separated) and nested image folder; one broken row."""
    base = root / "flickr30k_images"
    flickr_images(base / "flickr30k_images")
    lines = ["image_name| comment_number| comment"]
    for key, caps in CAPTIONS.items():
        lines += [f"{key}.jpg| {n}| {caption}" for n, caption in enumerate(caps)]
    lines[-1] = f"724.jpg| 4 {CAPTIONS['724'][4]}"  # the known row with a missing "|"
    (base / "results.csv").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return root


def folder_jsonl(root: Path) -> Path:
    """One root ``metadata.jsonl``; the split is the first folder of ``file_name``; 139 in two rows."""
    names = {"139": "train/139.JPG", "285": "train/285.jpg", "632": "valid/632.Png", "724": "test/724.jpg"}
    rows = []
    for key, name in names.items():
        image(root / name, key)
        written = name.lower() if key == "632" else name  # metadata says .png, disk has .Png
        rows.append({"file_name": written, "captions": CAPTIONS[key] if key != "139" else CAPTIONS[key][:2]})
    rows.append({"file_name": names["139"], "captions": CAPTIONS["139"][2:4]})
    rows.append({"file_name": names["139"], "captions": CAPTIONS["139"][4]})  # a single string
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return root


def folder_csv(root: Path) -> Path:
    """Per-split ``metadata.csv`` (train/, validation/, test/) with one row per caption."""
    folders = {"train": "train", "valid": "validation", "test": "test"}
    for split, folder in folders.items():
        lines = [["file_name", "caption", "source"]]
        for key in (k for k in CAPTIONS if SPLIT[k] == split):
            name = f"{key}.JPG" if key == "139" else f"{key}.jpg"
            image(root / folder / name, key)
            lines += [[name, caption, "x"] for caption in CAPTIONS[key]]
        (root / folder).mkdir(parents=True, exist_ok=True)
        with open(root / folder / "metadata.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(lines)
    return root


def build(name: str, root: Path | None = None, **kwargs) -> DatasetSource:
    cfg = DatasetConfig(name=name, root=None if root is None else str(root), **kwargs)
    return DATASETS.get(name)(cfg)


def key_of(image_id: str) -> str:
    """The COCO/Flickr id in any layout's image id (``139``, ``COCO_val2014_...139``, ``train/139.JPG``)."""
    return Path(image_id).stem.split("_")[-1].lstrip("0")


def rows(source: DatasetSource) -> dict[str, dict[str, list[str]]]:
    return {
        split: {key_of(r["image_id"]): sorted(r["captions"]) for r in ds}
        for split, ds in source.splits.items()
    }


def merged(by_split: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    return {key: caps for split in by_split.values() for key, caps in split.items()}


EXPECTED = {key: sorted(caps) for key, caps in CAPTIONS.items()}
EXPECTED_SPLITS = {
    split: {k: EXPECTED[k] for k in CAPTIONS if SPLIT[k] == split} for split in ("train", "valid", "test")
}
LAYOUTS = {
    "coco2017": ("coco_captions", coco2017),
    "karpathy_coco": ("coco_captions", karpathy_coco),
    "karpathy_flickr": ("flickr30k", karpathy_flickr),
    "flickr_token": ("flickr30k", flickr_token),
    "flickr_kaggle": ("flickr30k", flickr_kaggle),
    "folder_jsonl": ("captions_folder", folder_jsonl),
    "folder_csv": ("captions_folder", folder_csv),
}


# --- every layout gives the same rows ------------------------------------------------------------
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_give_the_same_rows(tmp_path: Path, layout: str) -> None:
    name, writer = LAYOUTS[layout]
    source = build(name, writer(tmp_path))
    assert merged(rows(source)) == EXPECTED
    assert source.image_column == "image"
    for split, ds in source.splits.items():
        assert split in ("train", "valid", "test")
        assert ds.features == FEATURES
        assert ds.column_names == ["image", "captions", "image_id"]
        for row in ds:
            path = Path(row["image"]["path"])
            assert row["image"]["bytes"] is None and path.is_absolute()
            assert path.is_file() == (key_of(row["image_id"]) != MISSING), path
    split_of = {key: split for split, keys in rows(source).items() for key in keys}
    if layout == "coco2017":  # val2017 holds the valid and test images
        assert split_of == {"139": "train", "285": "train", "632": "valid", "724": "valid"}
    elif layout in ("flickr_token", "flickr_kaggle"):
        assert set(split_of.values()) == {"train"}
    else:
        assert rows(source) == EXPECTED_SPLITS


def test_ids_and_paths_follow_each_layout(tmp_path: Path) -> None:
    coco = build("coco_captions", coco2017(tmp_path / "coco")).splits["train"]
    assert coco["image_id"] == ["139", "285"]  # image 800 has no caption
    assert Path(coco[0]["image"]["path"]).name == "000000000139.JPG"  # listed as .jpg
    assert Path(coco[1]["image"]["path"]) == (tmp_path / "coco" / "train2017" / "000000000285.jpg").absolute()
    karpathy = build("coco_captions", karpathy_coco(tmp_path / "kc")).splits["test"]
    assert karpathy["image_id"] == ["724"] and karpathy[0]["image"]["path"].endswith(
        "val2017/000000000724.jpg"
    )
    flickr = build("flickr30k", karpathy_flickr(tmp_path / "f")).splits["train"]
    assert flickr["image_id"] == ["139", "285"] and flickr[0]["image"]["path"].endswith("139.JPG")
    folder = build("captions_folder", folder_jsonl(tmp_path / "j")).splits
    assert folder["train"]["image_id"] == ["train/139.JPG", "train/285.jpg"]
    assert folder["valid"]["image_id"] == ["valid/632.Png"]
    assert folder["train"][0]["captions"] == CAPTIONS["139"]  # merged rows keep file order


def test_raw_captions_are_kept_exactly(tmp_path: Path) -> None:
    root = coco2017(tmp_path)
    path = root / "annotations" / "captions_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["caption"] = "  A Bedroom\nwith a bed. "
    write_json(path, data)
    captions = build("coco_captions", root).splits["valid"][0]["captions"]
    assert (
        captions[0] == "  A Bedroom\nwith a bed. "
        and "Horse and rider near the sea "
        in merged(rows(build("flickr30k", flickr_token(tmp_path / "f"))))["139"]
    )


def test_karpathy_is_preferred_and_restval_joins_train(tmp_path: Path) -> None:
    root = karpathy_coco(coco2017(tmp_path))
    splits = build("coco_captions", root).splits
    assert {split: sorted(ds["image_id"]) for split, ds in splits.items()} == {
        "train": ["139", "285"],
        "valid": ["632"],
        "test": ["724"],
    }


def test_folder_numbered_caption_columns_and_caption_column(tmp_path: Path) -> None:
    image(tmp_path / "a.jpg", "1")
    with open(tmp_path / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(
            [["file_name", "caption_10", "caption_0", "caption_2", "note"], ["a.jpg", "k", "i", "j", "n"]]
        )
    assert build("captions_folder", tmp_path).splits["train"][0]["captions"] == ["i", "j", "k"]
    assert build("captions_folder", tmp_path, caption_column="note").splits["train"][0]["captions"] == ["n"]


# --- layout errors: one line naming the file -----------------------------------------------------
def error(name: str, root: Path | None, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        build(name, root, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_coco_errors(tmp_path: Path) -> None:
    root = coco2017(tmp_path)
    val = root / "annotations" / "captions_val2017.json"
    data = json.loads(val.read_text())
    data["annotations"].append({"image_id": 999, "id": 37, "caption": "orphan"})
    write_json(val, data)
    assert error("coco_captions", root) == f"{val}: annotation 37 has image_id 999 which is not in images"
    write_json(val, {"images": [], "info": {}})
    assert error("coco_captions", root).startswith(f"{val}: no 'annotations' list")
    val.write_text("{not json", encoding="utf-8")
    assert error("coco_captions", root).startswith(f"{val}: not valid JSON")
    val.unlink()
    expected = "annotations/captions_{train,val}2017.json or dataset_coco.json (Karpathy)"
    assert error("coco_captions", root) == f"{val}: file not found; expected {expected}"
    assert "folder not found" in error("coco_captions", tmp_path / "nope")
    assert "set root" in error("coco_captions", None)


def test_skip_bad_samples_drops_orphan_annotations(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = coco2017(tmp_path)
    val = root / "annotations" / "captions_val2017.json"
    data = json.loads(val.read_text())
    data["annotations"] += [
        {"image_id": 999, "id": 37, "caption": "orphan"},
        {"image_id": 998, "id": 38, "caption": "x"},
    ]
    write_json(val, data)
    with caplog.at_level(logging.WARNING):
        source = build("coco_captions", root, skip_bad_samples=True)
    assert merged(rows(source)) == EXPECTED
    assert "annotation 37 has image_id 999" in caplog.text and "1 more" in caplog.text


def test_karpathy_errors(tmp_path: Path) -> None:
    root = karpathy_flickr(tmp_path)
    path = root / "dataset_flickr30k.json"
    data = json.loads(path.read_text())
    data["images"][1]["split"] = "holdout"
    write_json(path, data)
    assert (
        error("flickr30k", root)
        == f"{path}: images[1] has split 'holdout'; expected train, restval, val or test"
    )
    data["images"][1]["split"] = "train"
    del data["images"][2]["sentences"][0]["raw"]
    write_json(path, data)
    assert error("flickr30k", root).startswith(f"{path}: images[2] (632.jpg) needs sentences")
    write_json(path, {"dataset": "flickr30k"})
    assert error("flickr30k", root).startswith(f"{path}: no 'images' list")


def test_flickr_token_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = flickr_token(tmp_path)
    token = root / "results_20130124.token"
    token.write_text(token.read_text() + "no tab on this line\n", encoding="utf-8")
    assert error("flickr30k", root).startswith(f"{token}:22: expected '<file>.jpg#<n>\\\\t<caption>'")
    with caplog.at_level(logging.WARNING):
        assert merged(rows(build("flickr30k", root, skip_bad_samples=True))) == EXPECTED
    token.unlink()
    assert "has no caption file; expected dataset_flickr30k.json" in error("flickr30k", root)


def test_folder_errors(tmp_path: Path) -> None:
    assert "has no metadata file" in error("captions_folder", tmp_path)
    meta = tmp_path / "metadata.csv"
    meta.write_text("image,caption\na.jpg,x\n", encoding="utf-8")
    assert error("captions_folder", tmp_path) == (
        f"{meta}: no file_name column (columns: image, caption); expected file_name and one of "
        "captions, caption, text, sentences (or set caption_column)"
    )
    meta.write_text("file_name,label\na.jpg,x\n", encoding="utf-8")
    assert error("captions_folder", tmp_path).startswith(
        f"{meta}: no caption column (columns: file_name, label)"
    )
    message = error("captions_folder", tmp_path, caption_column="alt")
    assert message.startswith(f"{meta}: no caption column") and message.endswith("'alt' (caption_column)")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.jpg", "text": "x"}\n', encoding="utf-8")
    assert "keep one metadata file" in error("captions_folder", tmp_path)
    meta.unlink()
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.jpg", "text": "x"}\n[1]\n', encoding="utf-8")
    assert error("captions_folder", tmp_path).startswith(
        f"{tmp_path / 'metadata.jsonl'}:2: expected a JSON object"
    )
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.jpg", "text": 5}\n', encoding="utf-8")
    assert "is not a string or a list of strings" in error("captions_folder", tmp_path)
    (tmp_path / "metadata.jsonl").write_bytes(b'{"file_name": "a.jpg", "text": "caf\xe9"}\n')
    assert error("captions_folder", tmp_path).startswith(f"{tmp_path / 'metadata.jsonl'}: not UTF-8 text")


# --- Hub (a local save_to_disk folder) -----------------------------------------------------------
def hub_folder(tmp_path: Path) -> Path:
    for key in ("1", "2", "3"):
        image(tmp_path / "img" / f"{key}.png", key)
    paths = [str(tmp_path / "img" / f"{k}.png") for k in ("1", "2", "3")]
    train = datasets.Dataset.from_dict(
        {"image": paths[:2], "caption": [["a", "b "], ["c"]], "img_id": [11, 12], "other": [0, 1]},
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "caption": datasets.Sequence(datasets.Value("string")),
                "img_id": datasets.Value("int64"),
                "other": datasets.Value("int64"),
            }
        ),
    )
    valid = datasets.Dataset.from_dict(
        {"image": paths[2:], "text": ["One caption"]},
        features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}),
    )
    datasets.DatasetDict({"train": train, "validation": valid}).save_to_disk(str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_hub_captions_from_a_local_dataset_folder(tmp_path: Path) -> None:
    hub = hub_folder(tmp_path)
    for name in ("hub_captions", "captions_folder"):  # captions_folder without root goes to the Hub
        splits = build(name, None, hub_id=str(hub)).splits
        assert list(splits) == ["train", "valid"]
        assert splits["train"].features == FEATURES and splits["valid"].features == FEATURES
        assert splits["train"]["captions"] == [["a", "b "], ["c"]] and splits["train"]["image_id"] == [
            "11",
            "12",
        ]
        assert splits["valid"]["captions"] == [["One caption"]] and splits["valid"]["image_id"] == ["0"]
        value = splits["train"][0]["image"]
        assert isinstance(value, dict) and (value["bytes"] or value["path"])
    message = error("hub_captions", None, hub_id=str(hub), caption_column="alt")
    assert message == (
        f"[dataset] hub_id {str(hub)!r}: train has no caption column "
        "(columns: image, caption, img_id, other); expected 'alt' (caption_column)"
    )
    message = error("hub_captions", None, hub_id=str(hub), image_column="picture")
    assert "train has no image column 'picture'" in message and message.endswith("set image_column")
    assert "not an image" in error("hub_captions", None, hub_id=str(hub), image_column="other")

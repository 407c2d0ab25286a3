"""Detection builders: COCO / VOC / YOLO / Hub fixtures give identical internal rows; bad inputs are named."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from PIL import Image

from neurotrain_hf.data.registry import DATASETS
from neurotrain_hf.errors import DataError
from neurotrain_hf.tasks.detection import synthetic
from neurotrain_hf.tasks.detection.config import DetectionDataset as DatasetConfig
from neurotrain_hf.tasks.detection.sources import DETECTION_FEATURES, VOC_CLASSES, rle_counts, rle_encode

from .fixtures import (
    COCO_IDS,
    OBJECTS,
    H,
    W,
    coco_json,
    expected,
    voc_xml,
    write_coco,
    write_image,
    write_voc,
    write_yolo,
    yolo_line,
)


def build(name: str, **kwargs):
    return DATASETS.get(name)(DatasetConfig(name=name, **kwargs))


def rows(split: datasets.Dataset) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("image", "source")} for row in split]


def assert_rows(actual: list[dict], wanted: list[dict]) -> None:
    assert len(actual) == len(wanted)
    for got, exp in zip(actual, wanted):
        got_boxes, exp_boxes = got["objects"].pop("bbox"), exp["objects"].pop("bbox")
        assert np.allclose(np.reshape(got_boxes, (-1, 4)), np.reshape(exp_boxes, (-1, 4)), atol=1e-4), got[
            "id"
        ]
        got_area, exp_area = got["objects"].pop("area"), exp["objects"].pop("area")
        assert np.allclose(got_area, exp_area, atol=1e-2), got["id"]
        assert got == exp


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# --- every layout gives the same rows ------------------------------------------------------------
@pytest.fixture
def trees(tmp_path: Path) -> dict[str, DatasetConfig]:
    return {
        "coco": {"root": str(write_coco(tmp_path / "coco"))},
        "voc": {"root": str(write_voc(tmp_path / "voc"))},
        "yolo": {"root": str(write_yolo(tmp_path / "yolo"))},
    }


@pytest.mark.parametrize("name", ["coco", "voc", "yolo"])
def test_layouts_give_identical_rows(trees, name):
    source = build(name, **trees[name])
    assert list(source.splits) == ["train", "valid"]
    assert source.categories == list(VOC_CLASSES)
    assert source.skipped == [] and source.clipped == 0
    for split in ("train", "valid"):
        ds = source.splits[split]
        assert ds.features == DETECTION_FEATURES
        assert set(ds["source"]) == {name}
        assert all(Path(image["path"]).is_file() and image["bytes"] is None for image in ds["image"])
        assert_rows(rows(ds), expected(split))


def test_coco_json_builder_and_negatives(tmp_path):
    root = write_coco(tmp_path / "coco")
    data = coco_json("train", folder="train2017/")
    (tmp_path / "mine.json").write_text(json.dumps(data))
    source = build("coco_json", root=str(root), split_file=str(tmp_path / "mine.json"))
    assert list(source.splits) == ["train"]
    assert_rows(rows(source.splits["train"]), expected("train"))
    negative = source.splits["train"][2]
    assert negative["id"] == "000009" and negative["objects"]["bbox"] == []
    with pytest.raises(DataError, match="split_file"):
        build("coco_json", root=str(root))


# --- COCO specifics ------------------------------------------------------------------------------
def test_coco_categories_crowd_rle_and_polygons(tmp_path):
    root = write_coco(tmp_path / "coco")
    path = root / "annotations" / "instances_train2017.json"
    data = read_json(path)
    mask = np.zeros((H, W), dtype=bool)
    mask[5:15, 40:52] = True
    flat = mask.flatten(order="F")  # column-major runs, first run background
    edges = np.flatnonzero(np.diff(np.r_[0, flat.astype(int), 0]))
    counts = np.diff(np.r_[0, edges, H * W]).tolist()
    counts = [c for c in counts if c] if counts[-1] == 0 else counts
    polygon = [[10.0, 10.0, 20.0, 10.0, 20.0, 30.0]]
    data["annotations"] += [
        {"id": 50, "image_id": 2, "category_id": COCO_IDS["bird"], "bbox": [40, 5, 12, 10], "iscrowd": 1}
        | {"area": 120, "segmentation": {"size": [H, W], "counts": counts}},
        {"id": 51, "image_id": 2, "category_id": COCO_IDS["cow"], "bbox": [10, 10, 10, 20], "iscrowd": 0}
        | {"segmentation": polygon},  # no area: the polygon's
    ]
    path.write_text(json.dumps(data))
    source = build("coco", root=str(root))
    row = source.splits["train"][2]
    objects = row["objects"]
    assert row["image_id"] == 2 and objects["id"] == [50, 51]
    assert objects["category"] == [VOC_CLASSES.index("bird"), VOC_CLASSES.index("cow")]
    assert objects["iscrowd"] == [1, 0]
    rle = json.loads(objects["segmentation"][0])
    assert rle == {"size": [H, W], "counts": counts} and sum(rle_counts(rle["counts"])[1::2]) == 120
    assert json.loads(objects["segmentation"][1]) == polygon
    assert objects["area"] == [120.0, 100.0]
    assert np.allclose(objects["bbox"], [[40, 5, 52, 15], [10, 10, 20, 30]])


@pytest.mark.parametrize("seed", range(4))
def test_rle_encode_is_pycocotools_encode(seed):
    """Masks written into results json (mask models) are the strings pycocotools writes and reads."""
    from pycocotools import mask as mask_api

    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 70, 2)
    mask = rng.random((h, w)) < [0.0, 0.02, 0.5, 1.0][seed]  # empty, sparse, half, full
    mask[: h // 3, : w // 2] |= seed == 1  # a block: runs longer than 31 (more than one char)
    ours = rle_encode(mask)
    theirs = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert ours == {"size": [int(h), int(w)], "counts": theirs["counts"].decode()}
    assert np.array_equal(mask_api.decode({"size": ours["size"], "counts": ours["counts"]}), mask)


def test_coco_compressed_rle_matches_pycocotools(tmp_path):
    from pycocotools import mask as mask_api

    mask = np.zeros((H, W), dtype=np.uint8, order="F")
    mask[3:9, 5:17], mask[20:40, 30:33] = 1, 1
    encoded = mask_api.encode(mask)
    counts = encoded["counts"].decode()
    assert sum(rle_counts(counts)[1::2]) == int(mask.sum()) and sum(rle_counts(counts)) == H * W
    root = write_coco(tmp_path / "coco")
    path = root / "annotations" / "instances_train2017.json"
    data = read_json(path)
    data["annotations"].append(
        {"id": 9, "image_id": 2, "category_id": COCO_IDS["cat"], "bbox": [5, 3, 28, 37], "iscrowd": 1}
        | {"segmentation": {"size": [H, W], "counts": counts}}  # no area: the RLE's
    )
    path.write_text(json.dumps(data))
    objects = build("coco", root=str(root)).splits["train"][2]["objects"]
    assert objects["area"] == [float(mask.sum())]


# --- VOC and YOLO specifics ----------------------------------------------------------------------
@pytest.mark.parametrize("level", ["parent", "VOCdevkit", "VOC2012"])
def test_voc_roots_difficult_and_one_based_boxes(tmp_path, level):
    devkit = write_voc(tmp_path / "voc")
    (devkit / "VOC2012" / "Annotations" / "000005.xml").write_text(
        voc_xml("000005", OBJECTS["train"]["000005"], difficult=(1,))
    )
    root = {"parent": devkit.parent, "VOCdevkit": devkit, "VOC2012": devkit / "VOC2012"}[level]
    row = build("voc", root=str(root)).splits["train"][0]
    assert row["objects"]["iscrowd"] == [0, 1]  # difficult kept, marked like a crowd region
    assert row["objects"]["bbox"][0] == [4.0, 6.0, 30.0, 40.0]  # <xmin>5</xmin> (1-based) -> 4


def test_voc_2007_and_2012_together(tmp_path):
    write_voc(tmp_path, "VOC2007")
    devkit = write_voc(tmp_path, "VOC2012")
    source = build("voc", root=str(devkit))
    assert len(source.splits["train"]) == 6 and source.splits["train"]["image_id"] == list(range(6))


def test_yolo_names_dict_relative_path_and_segments(tmp_path):
    root = write_yolo(tmp_path / "yolo", names_as_dict=True)
    data = yaml.safe_load((root / "data.yaml").read_text())
    data["path"] = "."
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    source = build("yolo", root=str(root))
    assert source.categories == list(VOC_CLASSES)
    assert_rows(rows(source.splits["train"]), expected("train"))
    # a segment line: class x1 y1 x2 y2 x3 y3 (normalised) -> absolute polygon, box and polygon area
    label = root / "labels" / "train" / "000009.txt"
    label.write_text(f"{VOC_CLASSES.index('cow')} 0.125 0.25 0.5 0.25 0.5 0.75\n")
    (tmp_path / "elsewhere.yaml").write_text(yaml.safe_dump(data | {"path": str(root)}))
    row = build("yolo", split_file=str(tmp_path / "elsewhere.yaml")).splits["train"][2]
    assert row["objects"]["bbox"] == [[8.0, 12.0, 32.0, 36.0]]
    assert json.loads(row["objects"]["segmentation"][0]) == [[8.0, 12.0, 32.0, 12.0, 32.0, 36.0]]
    assert row["objects"]["area"] == [24.0 * 24.0 / 2]


def test_yolo_names_as_dict_with_gaps(tmp_path):
    root = write_yolo(tmp_path / "yolo")
    data = yaml.safe_load((root / "data.yaml").read_text())
    data["names"] = {3: "car", 10: "dog", 12: "cat", 14: "person"}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    lines = {"000005": "10 0.5 0.5 0.2 0.2\n14 0.5 0.5 0.1 0.1\n", "000007": "3 0.5 0.5 0.5 0.5\n"}
    for stem, text in lines.items():
        (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    (root / "labels" / "val" / "000012.txt").write_text("12 0.5 0.5 0.5 0.5\n")
    source = build("yolo", root=str(root))
    assert source.categories == ["car", "dog", "cat", "person"]
    assert source.splits["train"]["objects"][0]["category"] == [1, 3]


# --- Hub -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("nested", ["sequence", "list"])
def test_hub_detection_from_xywh(tmp_path, nested):
    images = write_coco(tmp_path / "coco") / "train2017"
    rows_in = []
    for row in expected("train"):
        objs = row["objects"]
        bbox = [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in objs["bbox"]]
        objects = {"id": objs["id"], "area": objs["area"], "bbox": bbox, "category": objs["category"]}
        if nested == "list":
            objects = [dict(zip(objects, values)) for values in zip(*objects.values())]
        rows_in.append(
            {"image": str(images / f"{row['id']}.jpg"), "image_id": row["image_id"]}
            | {"width": W, "height": H, "objects": objects}
        )
    fields = {
        "id": datasets.Value("int64"),
        "area": datasets.Value("float32"),
        "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
        "category": datasets.ClassLabel(names=list(VOC_CLASSES)),
    }
    objects_feature = datasets.Sequence(fields) if nested == "sequence" else datasets.List(fields)
    features = datasets.Features(
        {"image": datasets.Image(), "image_id": datasets.Value("int64"), "width": datasets.Value("int32")}
        | {"height": datasets.Value("int32"), "objects": objects_feature}
    )
    ds = datasets.Dataset.from_list(rows_in, features=features)
    datasets.DatasetDict({"train": ds, "validation": ds.select([0])}).save_to_disk(str(tmp_path / "hub"))
    source = build("hub_detection", hub_id=str(tmp_path / "hub"))
    assert list(source.splits) == ["train", "valid"] and source.categories == list(VOC_CLASSES)
    assert_rows(rows(source.splits["train"]), expected("train"))
    assert source.splits["train"][0]["image"]["bytes"]  # embedded by save_to_disk


# --- synthetic -----------------------------------------------------------------------------------
SATURATED = 40, 200  # shape colour channels are <= 40 or >= 200; the background stays in [60, 160]


def test_synthetic_is_deterministic_and_boxes_are_tight():
    source = build(synthetic.NAME, max_samples=40)
    again = build(synthetic.NAME, max_samples=40)
    assert {k: len(v) for k, v in source.splits.items()} == {"train": 40, "valid": 40, "test": 40}
    assert source.categories == ["circle", "square", "triangle"]
    assert source.splits["train"].features == DETECTION_FEATURES
    for split in source.splits:
        assert source.splits[split][:] == again.splits[split][:]
    assert (
        build(synthetic.NAME, max_samples=5).splits["train"][:] == source.splits["train"].select(range(5))[:]
    )
    train = source.splits["train"]
    assert any(len(o["bbox"]) == 0 for o in train["objects"]) and {
        c for o in train["objects"] for c in o["category"]
    } == {0, 1, 2}
    for row in train:
        assert row["image"]["path"] is None
        pixels = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")).astype(int)
        shape = ((pixels <= SATURATED[0]) | (pixels >= SATURATED[1])).any(-1)
        assert shape.sum() == sum(row["objects"]["area"])  # no background pixel looks like a shape
        for (x0, y0, x1, y1), area, seg in zip(
            row["objects"]["bbox"], row["objects"]["area"], row["objects"]["segmentation"]
        ):
            x0, y0, x1, y1 = map(int, (x0, y0, x1, y1))
            inside = pixels[y0:y1, x0:x1][shape[y0:y1, x0:x1]]
            colours, n = np.unique(inside, axis=0, return_counts=True)
            colour = colours[n.argmax()]
            same = (pixels == colour).all(-1)
            assert same[y0:y1, x0:x1].sum() == area == same.sum()  # all of it inside the box
            for edge in (same[y0, x0:x1], same[y1 - 1, x0:x1], same[y0:y1, x0], same[y0:y1, x1 - 1]):
                assert edge.any()  # tight: every border row/column of the box touches the shape
            assert len(json.loads(seg)[0]) >= 6


# --- bad inputs: one line naming the file / annotation, or skipped and counted -------------------
def _coco(tmp_path: Path, edit) -> dict:
    root = write_coco(tmp_path / "coco")
    path = root / "annotations" / "instances_train2017.json"
    data = read_json(path)
    edit(data, root)
    path.write_text(json.dumps(data))
    return {"root": str(root)}


def _ann(index: int, **changes):
    return lambda data, root: data["annotations"][index].update(changes)


def _voc(tmp_path: Path, edit) -> dict:
    devkit = write_voc(tmp_path / "voc")
    edit(devkit / "VOC2012")
    return {"root": str(devkit)}


def _yolo(tmp_path: Path, edit) -> dict:
    root = write_yolo(tmp_path / "yolo")
    edit(root)
    return {"root": str(root)}


def _write(relative: str, text: str | bytes):
    def edit(root: Path) -> None:
        path = root / relative
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)

    return edit


def _sized(index: int, width: int):
    return lambda data, root: data["images"][index].update(width=width)


BAD = {  # case: (layout, edit, words the message names, image dropped under skip_bad_samples)
    "coco zero width": ("coco", _ann(0, bbox=[4, 6, 0, 34]), ["000005.jpg: annotation 1", "zero or negative"], False),
    "coco outside": ("coco", _ann(1, bbox=[70, 50, 5, 5]), ["annotation 2", "entirely outside the 64x48"], False),
    "coco category": ("coco", _ann(2, category_id=4), ["000007.jpg: annotation 3", "category 4"], False),
    "coco image id": ("coco", _ann(2, image_id=99), ["annotation 3", "image_id 99"], False),
    "coco polygon": ("coco", _ann(0, segmentation=[[1, 2, 3, 4]]), ["annotation 1", "fewer than three"], False),
    "coco rle size": ("coco", _ann(2, iscrowd=1, segmentation={"size": [W, H], "counts": [H * W]}), ["000007.jpg: annotation 3", "RLE size [64, 48] (runs 3072)"], False),
    "coco size": ("coco", _sized(1, 65), ["000007.jpg", "(65, 48)", "64x48"], True),
    "coco corrupt": ("coco", lambda d, r: (r / "train2017" / "000007.jpg").write_bytes(b"no"), ["000007.jpg", "cannot read"], True),
    "coco missing": ("coco", lambda d, r: (r / "train2017" / "000009.jpg").unlink(), ["000009.jpg", "cannot read"], True),
    "voc class": ("voc", lambda b: (b / "Annotations" / "000007.xml").write_text(voc_xml("000007", [("truck", (1, 1, 9, 9))])), ["000007.xml: object 0 (truck)", "category 'truck'"], False),
    "voc box": ("voc", lambda b: (b / "Annotations" / "000007.xml").write_text(voc_xml("000007", [("car", (20, 10, 10, 30))])), ["000007.xml: object 0 (car)", "zero or negative"], False),
    "voc no xml": ("voc", lambda b: (b / "Annotations" / "000009.xml").unlink(), ["000009.xml", "annotation file not found"], True),
    "voc corrupt": ("voc", lambda b: (b / "JPEGImages" / "000005.jpg").write_bytes(b"\xff\xd8junk"), ["000005.jpg", "cannot read"], True),
    "yolo class": ("yolo", _write("labels/train/000007.txt", "25 0.5 0.5 0.2 0.2\n"), ["000007.txt:1", "category 25"], False),
    "yolo line": ("yolo", _write("labels/train/000007.txt", "3 0.5 0.5\n"), ["000007.txt:1", "class cx cy w h"], False),
    "yolo odd polygon": ("yolo", _write("labels/train/000007.txt", "3 0.1 0.1 0.5 0.1 0.5\n"), ["000007.txt:1", "fewer than three"], False),
    "yolo zero box": ("yolo", _write("labels/train/000007.txt", yolo_line("car", (10, 10, 10, 30))), ["000007.txt:1", "zero or negative"], False),
    "yolo outside": ("yolo", _write("labels/train/000007.txt", "6 1.5 1.5 0.2 0.2\n"), ["000007.txt:1", "entirely outside"], False),
}  # fmt: skip
WRITERS = {"coco": _coco, "voc": _voc, "yolo": _yolo}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_error_or_skipped(tmp_path, case):
    layout, edit, words, drops_image = BAD[case]
    kwargs = WRITERS[layout](tmp_path / "raise", edit)
    with pytest.raises(DataError) as info:
        build(layout, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"[dataset] {layout}: ")
    for word in words:
        assert word in message, message
    assert "skip_bad_samples" in message
    source = build(layout, skip_bad_samples=True, **WRITERS[layout](tmp_path / "skip", edit))
    assert len(source.skipped) == 1 and words[0] in source.skipped[0]
    # the kept images and their boxes are the fixture's, less the dropped image or the one bad object
    kept = {
        r["id"]: {tuple(round(v) for v in b) for b in r["objects"]["bbox"]}
        for r in rows(source.splits["train"])
    }
    fixture = {stem: {box for _, box in objects} for stem, objects in OBJECTS["train"].items()}
    if drops_image:
        dropped = Path(words[0].split(":")[0]).stem
        assert kept == {stem: boxes for stem, boxes in fixture.items() if stem != dropped}
    else:
        assert kept.keys() == fixture.keys()
        lost = [(stem, box) for stem, boxes in fixture.items() for box in boxes - kept[stem]]
        assert len(lost) == 1 and all(kept[stem] <= fixture[stem] for stem in kept), lost


def test_partly_outside_boxes_are_clipped_and_counted(tmp_path):
    kwargs = _coco(tmp_path, _ann(0, bbox=[-4, 40, 20, 20]))
    source = build("coco", **kwargs)
    assert source.clipped == 1 and source.skipped == []
    assert source.splits["train"][0]["objects"]["bbox"][0] == [0.0, 40.0, 16.0, 48.0]


def test_hub_bad_box_names_the_row(tmp_path):
    image = write_image(tmp_path / "a.jpg")
    fields = {
        "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
        "category": datasets.ClassLabel(names=["x"]),
    }
    features = datasets.Features({"image": datasets.Image(), "objects": datasets.Sequence(fields)})
    ds = datasets.Dataset.from_list(
        [{"image": str(image), "objects": {"bbox": [[1, 1, 0, 5]], "category": [0]}}], features=features
    )
    ds.save_to_disk(str(tmp_path / "hub"))
    with pytest.raises(DataError, match=r"train row 0 \(a.jpg\): object 0: box .* zero or negative"):
        build("hub_detection", hub_id=str(tmp_path / "hub"))
    source = build("hub_detection", hub_id=str(tmp_path / "hub"), skip_bad_samples=True)
    assert len(source.skipped) == 1 and source.splits["train"][0]["objects"]["bbox"] == []

"""Tiny detection trees in the official COCO / Pascal VOC / YOLO layouts, holding the same images and boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from neurotrain_hf.tasks.detection.sources import VOC_CLASSES

W, H = 64, 48
# split -> image stem -> [(VOC class, (x_min, y_min, x_max, y_max) 0-based absolute pixels)]
OBJECTS = {
    "train": {
        "000005": [("dog", (4, 6, 30, 40)), ("person", (32, 2, 60, 46))],
        "000007": [("car", (10, 10, 50, 30))],
        "000009": [],  # a negative: no objects
    },
    "valid": {"000012": [("cat", (0, 0, 20, 20))]},
}
COCO_IDS = {name: 2 * i + 3 for i, name in enumerate(VOC_CLASSES)}  # non-contiguous: 3, 5, 7, ...
COCO_FOLDERS = {"train": "train2017", "valid": "val2017"}
VOC_LISTS = {"train": "train", "valid": "val"}
YOLO_FOLDERS = {"train": "train", "valid": "val"}


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (W, H)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


def expected(split: str = "train") -> list[dict]:
    """Internal rows (without ``image``/``source``) every layout's builder must give for ``split``."""
    rows, ann_id = [], 1
    for index, (stem, objects) in enumerate(sorted(OBJECTS[split].items())):
        out: dict[str, list] = {k: [] for k in ("bbox", "category", "area", "iscrowd", "segmentation", "id")}
        for name, (x0, y0, x1, y1) in objects:
            out["bbox"].append([float(x0), float(y0), float(x1), float(y1)])
            out["category"].append(VOC_CLASSES.index(name))
            out["area"].append(float((x1 - x0) * (y1 - y0)))
            out["iscrowd"].append(0)
            out["segmentation"].append("")
            out["id"].append(ann_id)
            ann_id += 1
        rows.append({"image_id": index, "id": stem, "width": W, "height": H, "objects": out})
    return rows


def coco_json(split: str, folder: str = "") -> dict:
    """An instances json for ``split`` (image ids = sorted position, annotation ids 1..N as ``expected``)."""
    images, annotations = [], []
    for index, (stem, objects) in enumerate(sorted(OBJECTS[split].items())):
        images.append(
            {"id": index, "file_name": f"{folder}{stem}.jpg", "width": W, "height": H, "license": 1}
        )
        for name, (x0, y0, x1, y1) in objects:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": index, "category_id": COCO_IDS[name]}
                | {"bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}
                | {"segmentation": []}
            )
    categories = [{"id": COCO_IDS[n], "name": n, "supercategory": "voc"} for n in reversed(VOC_CLASSES)]
    return {"info": {"year": 2017}, "licenses": [], "images": images, "annotations": annotations} | {
        "categories": categories
    }


def write_coco(root: Path) -> Path:
    """``coco/{train2017,val2017}/*.jpg`` and ``annotations/instances_{train,val}2017.json``."""
    for split, folder in COCO_FOLDERS.items():
        for seed, stem in enumerate(sorted(OBJECTS[split])):
            write_image(root / folder / f"{stem}.jpg", seed)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{folder}.json").write_text(json.dumps(coco_json(split)))
    (root / "train2017" / ".DS_Store").write_bytes(b"junk")
    return root


def voc_xml(stem: str, objects: list, difficult: tuple[int, ...] = ()) -> str:
    parts = [f"<annotation><folder>VOC2012</folder><filename>{stem}.jpg</filename>"]
    parts.append(f"<size><width>{W}</width><height>{H}</height><depth>3</depth></size>")
    for i, (name, (x0, y0, x1, y1)) in enumerate(objects):
        box = f"<xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"  # 1-based
        flag = int(i in difficult)
        parts.append(f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>")
        parts.append(f"<difficult>{flag}</difficult><bndbox>{box}</bndbox></object>")
    return "".join(parts) + "</annotation>"


def write_voc(root: Path, year: str = "VOC2012") -> Path:
    """``VOCdevkit/<year>/{Annotations,JPEGImages,ImageSets/Main/{train,val,trainval}.txt}``; returns VOCdevkit."""
    base = root / "VOCdevkit" / year
    lists: dict[str, list[str]] = {}
    for split, listed in VOC_LISTS.items():
        for seed, (stem, objects) in enumerate(sorted(OBJECTS[split].items())):
            write_image(base / "JPEGImages" / f"{stem}.jpg", seed)
            (base / "Annotations").mkdir(parents=True, exist_ok=True)
            (base / "Annotations" / f"{stem}.xml").write_text(voc_xml(stem, objects))
        lists[listed] = sorted(OBJECTS[split])
    lists["trainval"] = lists["train"] + lists["val"]
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for listed, stems in lists.items():
        (base / "ImageSets" / "Main" / f"{listed}.txt").write_text("".join(f"{s}\n" for s in stems))
    (base / "ImageSets" / "Main" / "dog_train.txt").write_text("000005  1\n")  # class lists: not splits
    return root / "VOCdevkit"


def yolo_line(name: str, box: tuple, names: tuple[str, ...] = VOC_CLASSES) -> str:
    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W, (y1 - y0) / H
    return f"{names.index(name)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"


def write_yolo(root: Path, names_as_dict: bool = False) -> Path:
    """``data.yaml`` with ``images/{train,val}`` and ``labels/{train,val}`` (one empty label file)."""
    for split, folder in YOLO_FOLDERS.items():
        for seed, (stem, objects) in enumerate(sorted(OBJECTS[split].items())):
            write_image(root / "images" / folder / f"{stem}.jpg", seed)
            (root / "labels" / folder).mkdir(parents=True, exist_ok=True)
            lines = "".join(yolo_line(name, box) for name, box in objects)
            (root / "labels" / folder / f"{stem}.txt").write_text(lines)
    names = dict(enumerate(VOC_CLASSES)) if names_as_dict else list(VOC_CLASSES)
    data = {"path": str(root), "train": "images/train", "val": "images/val", "names": names}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root

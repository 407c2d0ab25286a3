"""The detection Tester's outputs and ``neurotrain predict`` drawings.

Per image of a test split: a CSV row (references, confident detections, matches at IoU 0.5, loss),
this rank's detections (RLE masks too, for mask models) appended to its part of the COCO results, and
a drawing of the first ``[training] drawings`` images (``drawings/<split>_<image id>.png``: references
green, predictions with label and score). When every rank is done, the main process merges the parts
into ``<split>_results.json`` (what pycocotools' ``loadRes`` reads, for ``bbox`` and ``segm``) and
writes the split as COCO ground truth (``<split>_coco_gt.json``, categories numbered as the model's labels).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...drawing import draw_detections
from ..base import SampleBatch, TestOutputs, loss_text
from .processor import IMAGENET_MEAN, IMAGENET_STD
from .sources import rle_encode

RESULTS = "results.jsonl"


def xywh(boxes: torch.Tensor) -> list[list[float]]:
    b = boxes.double()
    return torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).tolist()


def matched_at_50(pred: dict, ref: dict, threshold: float) -> int:
    """Detections scoring >= ``threshold`` matched one-to-one to a same-class reference at IoU >= 0.5."""
    from torchvision.ops import box_iou

    keep = pred["scores"] >= threshold
    boxes, labels = pred["boxes"][keep], pred["labels"][keep]
    refs = ~ref["iscrowd"].bool()
    if not len(boxes) or not refs.any():
        return 0
    iou = box_iou(boxes, ref["boxes"][refs]) * (labels[:, None] == ref["labels"][refs][None])
    used, hits = set(), 0
    for row in iou:
        candidates = [(float(v), j) for j, v in enumerate(row) if v >= 0.5 and j not in used]
        if candidates:
            used.add(max(candidates)[1])
            hits += 1
    return hits


def image_ids(batch: SampleBatch) -> list[int]:
    ids = batch.inputs.get("image_id")
    return [int(i) for i in ids.tolist()] if ids is not None else list(batch.indices)


def sample_records(batch: SampleBatch, out: TestOutputs) -> list[dict[str, Any]]:
    threshold = out.config.training.f1_score_threshold
    rows = []
    for k, (index, image_id) in enumerate(zip(batch.indices, image_ids(batch))):
        pred, ref = batch.predictions[k], batch.references[k]
        rows.append(
            {
                "index": index,
                "image_id": image_id,
                "references": int((~ref["iscrowd"].bool()).sum()),
                "detections": int((pred["scores"] >= threshold).sum()),
                "matched_50": matched_at_50(pred, ref, threshold),
                "loss": loss_text(batch.losses, k),
            }
        )
    return rows


def picture(inputs: dict[str, Any], k: int) -> np.ndarray:
    """The image at its own size from the normalised canvas (for drawings)."""
    from torch.nn.functional import interpolate

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    canvas = inputs["pixel_values"][k].detach().float().cpu() * std + mean
    h, w = (int(v) for v in inputs["original_size"][k].tolist())
    scale = canvas.shape[-1] / max(h, w)
    crop = canvas[:, : max(round(h * scale), 1), : max(round(w * scale), 1)]
    image = interpolate(crop[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def write_samples(batch: SampleBatch, out: TestOutputs) -> None:
    """This rank's COCO results (appended to its part) and the drawings of the first images."""
    args = out.config.training
    names = list(out.info.label_names)
    with open(out.part(RESULTS), "a", encoding="utf-8") as f:
        for k, (index, image_id) in enumerate(zip(batch.indices, image_ids(batch))):
            pred = batch.predictions[k]
            for j, (box, score, label) in enumerate(
                zip(xywh(pred["boxes"]), pred["scores"].tolist(), pred["labels"].tolist())
            ):
                record = {"image_id": image_id, "category_id": int(label), "bbox": box, "score": score}
                if "masks" in pred:  # instance masks as COCO RLE: the results load for `segm` too
                    record["segmentation"] = rle_encode(pred["masks"][j].cpu().numpy())
                f.write(json.dumps(record) + "\n")
            if index < args.drawings:
                draw_detections(
                    out.folder / "drawings" / f"{out.split}_{image_id}.png",
                    picture(batch.inputs, k),
                    pred,
                    batch.references[k],
                    names,
                    args.f1_score_threshold,
                )


def finish_outputs(out: TestOutputs) -> None:
    """Merge the ranks' results into ``<split>_results.json``; write ``<split>_coco_gt.json``."""
    results = []
    for part in out.parts(RESULTS):
        if part.is_file():
            results += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines()]
            os.remove(part)
    results.sort(key=lambda r: (r["image_id"], -r["score"]))
    write_json(out.folder / f"{out.split}_results.json", results)
    if out.rows is not None:
        rows = out.rows.select_columns(["image_id", "id", "width", "height", "objects"])
        write_json(
            out.folder / f"{out.split}_coco_gt.json", coco_ground_truth(rows, list(out.info.label_names))
        )


def coco_ground_truth(rows, categories: list[str]) -> dict[str, Any]:
    """A COCO instances dict of a split (categories numbered as the model's labels, 0-based)."""
    images, annotations = [], []
    for row in rows:
        images.append(
            {
                "id": int(row["image_id"]),
                "file_name": row["id"],
                "width": int(row["width"]),
                "height": int(row["height"]),
            }
        )
        objects = row["objects"]
        for i, box in enumerate(objects["bbox"]):
            x0, y0, x1, y1 = (float(v) for v in box)
            ann = {
                "id": int(objects["id"][i]) if objects["id"][i] else len(annotations) + 1,
                "image_id": int(row["image_id"]),
                "category_id": int(objects["category"][i]),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": float(objects["area"][i]),
                "iscrowd": int(objects["iscrowd"][i]),
            }
            if objects["segmentation"][i]:
                ann["segmentation"] = json.loads(objects["segmentation"][i])
            annotations.append(ann)
    seen = set()
    for ann in annotations:  # annotation ids unique across the split
        while ann["id"] in seen:
            ann["id"] += 10**9
        seen.add(ann["id"])
    cats = [{"id": i, "name": name} for i, name in enumerate(categories)]
    return {"images": images, "annotations": annotations, "categories": cats}


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(tmp, path)


def save_prediction(record: dict[str, Any], source: Any, out_dir: str | Path | None) -> list[Path]:
    """``<name>_detections.png``: the image with its detections drawn (nothing without ``out_dir``)."""
    from ...data.images import decode_image

    if out_dir is None:
        return []
    image = decode_image(str(source), 3).permute(1, 2, 0).numpy().astype(np.uint8)
    mapping = {int(i): n for i, n in zip(record["labels"], record["label_names"])}
    labels = [mapping.get(i, str(i)) for i in range(max(mapping, default=-1) + 1)]
    return [
        draw_detections(
            Path(out_dir) / f"{Path(str(source)).stem}_detections.png", image, record, None, labels, 0.0
        )
    ]

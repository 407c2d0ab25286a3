"""``DetectionTrainer``: NeuroTrainer for detectors (DETR family and torchvision), COCO metrics and results.

The loss is the model's own (transformers DETR-family Hungarian loss, or the sum of torchvision's loss
dict); every term of the model's ``loss_dict`` is logged as a ``loss_<term>`` column. Evaluation streams
COCO metrics; a test run also writes, per rank then merged, the COCO results json (``<split>_results.json``,
what pycocotools' ``loadRes`` reads), the matching ground truth (``<split>_coco_gt.json``), per-image rows
and drawings of the first images.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError
from ...trainer.neuro_trainer import NeuroTrainer
from .config import DetectionConfig
from .drawing import draw_detections
from .metrics import DetectionMetrics


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


class DetectionTrainer(NeuroTrainer):
    """The model's own loss with its terms logged; streamed COCO metrics; results json + drawings on test."""

    def __init__(
        self,
        model: torch.nn.Module,
        args: DetectionConfig,
        *,
        label_names: list[str],
        masks: bool = False,
        **kwargs: Any,
    ) -> None:
        self.category_names = list(label_names)
        names = list(args.metrics or [])
        best = (args.metric_for_best_model or "").removeprefix("eval_")
        if best and best != "loss" and best not in names:
            raise ConfigError(
                f"[training] metric_for_best_model = {best!r} is not in [training] metrics {names}"
            )
        kwargs.setdefault(
            "metrics", DetectionMetrics(names, masks, args.f1_score_threshold) if names else None
        )
        super().__init__(model, args, **kwargs)
        self._results: Any = None
        self._split_rows: Any = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        terms = outputs.get("loss_dict") if isinstance(outputs, dict) else None
        if model.training and terms:
            scale = 1.0 / self.current_gradient_accumulation_steps
            for name, value in terms.items():
                if torch.is_tensor(value) and name.startswith(("loss", "classification", "bbox")):
                    key = name[5:] if name.startswith("loss_") else name
                    self._terms[key] = self._terms.get(key, 0.0) + value.detach().float() * scale
        return (loss, outputs) if return_outputs else loss

    # --- test outputs ---------------------------------------------------------------------------------
    def predict(self, test_dataset, *args: Any, **kwargs: Any):
        """As ``Trainer.predict``; keeps the split's rows (ids, sizes, objects) for the results files."""
        self._split_rows = test_dataset.with_format(None).select_columns(
            ["image_id", "id", "width", "height", "objects"]
        )
        return super().predict(test_dataset, *args, **kwargs)  # rows dropped once the results are merged

    @contextlib.contextmanager
    def writing_samples(self, path):
        """Besides the per-image CSV: this rank's COCO results, merged into ``<split>_results.json``."""
        with super().writing_samples(path) as writer:
            if writer is None:
                yield writer
                return
            split = writer.path.stem.replace("_per_sample", "")
            part = writer.path.with_name(f".{split}_results.rank{self.args.process_index}.jsonl")
            self._results = open(part, "w", encoding="utf-8")  # noqa: SIM115 - closed below
            try:
                yield writer
            finally:
                self._results.close()
                self._results = None
        if self.is_world_process_zero():
            self._merge_results(writer.path.parent, split)

    def _merge_results(self, folder: Path, split: str) -> None:
        results = []
        for rank in range(self.accelerator.num_processes):
            part = folder / f".{split}_results.rank{rank}.jsonl"
            results += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines()]
            os.remove(part)
        results.sort(key=lambda r: (r["image_id"], -r["score"]))
        _write_json(folder / f"{split}_results.json", results)
        if self._split_rows is not None:
            _write_json(
                folder / f"{split}_coco_gt.json", coco_ground_truth(self._split_rows, self.category_names)
            )

    def sample_records(self, indices, predictions, references, losses, inputs=None) -> list[dict[str, Any]]:
        rows = []
        folder = self.sample_writer.path.parent / "drawings" if self.sample_writer is not None else None
        image_ids = (
            inputs["image_id"].tolist() if inputs is not None and "image_id" in inputs else list(indices)
        )
        for k, index in enumerate(indices):
            pred, ref = predictions[k], references[k]
            image_id = int(image_ids[k])
            if self._results is not None:
                for box, score, label in zip(
                    xywh(pred["boxes"]), pred["scores"].tolist(), pred["labels"].tolist()
                ):
                    record = {
                        "image_id": image_id,
                        "category_id": int(label),
                        "bbox": box,
                        "score": score,
                    }
                    self._results.write(json.dumps(record) + "\n")
            confident = int((pred["scores"] >= self.args.f1_score_threshold).sum())
            rows.append(
                {
                    "index": index,
                    "image_id": image_id,
                    "references": int((~ref["iscrowd"].bool()).sum()),
                    "detections": confident,
                    "matched_50": matched_at_50(pred, ref, self.args.f1_score_threshold),
                    "loss": f"{float(losses[k]):.6f}" if losses is not None else "",
                }
            )
            if folder is not None and inputs is not None and index < self.args.drawings:
                draw_detections(
                    folder / f"{image_id}.png",
                    self._picture(inputs, k),
                    pred,
                    ref,
                    self.category_names,
                    self.args.f1_score_threshold,
                )
        return rows

    def _picture(self, inputs: dict[str, Any], k: int) -> np.ndarray:
        """The image at its own size from the normalised canvas (for drawings)."""
        from torch.nn.functional import interpolate

        processor_mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        processor_std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        canvas = inputs["pixel_values"][k].detach().float().cpu() * processor_std + processor_mean
        h, w = (int(v) for v in inputs["original_size"][k].tolist())
        scale = float(inputs["scale"][k])
        crop = canvas[:, : max(round(h * scale), 1), : max(round(w * scale), 1)]
        image = interpolate(crop[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        return (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)


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


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(tmp, path)

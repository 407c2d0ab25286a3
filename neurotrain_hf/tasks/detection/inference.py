"""``DetectionInference``: model outputs -> per-image detections in each image's own pixels.

DETR-family models (transformers) give query logits and normalised cx, cy, w, h boxes of the canvas: DETR
scores with a softmax over classes plus "no object", the others (Conditional / Deformable DETR, RT-DETR)
with sigmoids and a top-k over queries x classes, as their processors' ``post_process_object_detection``.
torchvision detectors return their detections directly. Then: score threshold, class-wise NMS
(``torchvision.ops.batched_nms``), ``max_detections``, and canvas -> image pixels (``to_original``, the
letterbox scale being the canvas side over the image's longer side). The settings are one
``DetectionSettings`` saved in the model's ``config.json``, read by evaluation, the Tester, the
Predictor, the processor's ``post_process_object_detection`` (``transformers.pipeline``) and the demo.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torchvision.ops import batched_nms, box_convert

from ...trainer.inference import Inference
from ..base import SETTINGS_KEY
from .processor import NeuroDetectionProcessor

SOFTMAX_MODELS = ("detr", "table-transformer", "yolos")


@dataclass
class DetectionSettings:
    """Which detections a detection model reports (saved in ``config.json``)."""

    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    max_detections: int = 100

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DetectionSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})

    @classmethod
    def of(cls, model_config: Any) -> DetectionSettings:
        return cls.from_dict(getattr(model_config, SETTINGS_KEY, None))

    def save(self, model_config: Any) -> None:
        setattr(model_config, SETTINGS_KEY, self.to_dict())


def decode_queries(outputs: Any, model_type: str, size: int, top_k: int) -> list[dict[str, torch.Tensor]]:
    """DETR-family logits / pred_boxes -> per image boxes (canvas xyxy), scores, 0-based labels."""
    logits, boxes = outputs.logits.float(), outputs.pred_boxes.float()
    xyxy = box_convert(boxes, "cxcywh", "xyxy") * size
    out = []
    for b in range(logits.shape[0]):
        if model_type in SOFTMAX_MODELS:  # the last class is "no object"
            scores, labels = logits[b].softmax(-1)[:, :-1].max(-1)
            out.append({"boxes": xyxy[b], "scores": scores, "labels": labels})
            continue
        prob = logits[b].sigmoid()
        k = min(top_k, prob.numel())
        scores, index = prob.flatten().topk(k)
        queries, labels = index // prob.shape[1], index % prob.shape[1]
        out.append({"boxes": xyxy[b][queries], "scores": scores, "labels": labels})
    return out


class DetectionInference(Inference):
    """Detections per image (score threshold, class-wise NMS, top ``max_detections``), in image pixels."""

    def __init__(self, settings: DetectionSettings | None = None, model_type: str = "") -> None:
        super().__init__(("pixel_values", "pixel_mask"))
        self.settings = settings or DetectionSettings()
        self.model_type = model_type

    def __call__(self, model: torch.nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
        """``{"loss", "outputs", "canvas", "original_size"}``: the model's outputs and what maps them back."""
        kwargs = self.model_inputs(inputs)
        if inputs.get("labels") is not None:
            kwargs["labels"] = inputs["labels"]  # the evaluation loss
        outputs = model(**kwargs)
        loss = outputs.get("loss") if isinstance(outputs, dict) else None
        return {
            "loss": loss,
            "outputs": outputs,
            "canvas": int(inputs["pixel_values"].shape[-1]),
            "original_size": inputs.get("original_size"),
        }

    def records(self, result: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        """Per image: detections in its own pixels (``original_size``: (height, width) per image)."""
        canvas = int(result["canvas"])
        dets = self.detections(result["outputs"], self.model_type, canvas)
        sizes = torch.as_tensor(result["original_size"]).tolist()
        return [self.to_original(d, canvas / max(size), size) for d, size in zip(dets, sizes)]

    def detections(self, outputs: Any, model_type: str, canvas: int) -> list[dict[str, torch.Tensor]]:
        """Canvas detections after the score threshold, class-wise NMS and the top-k."""
        s = self.settings
        found = outputs.get("detections") if isinstance(outputs, dict) else None
        raw = found if found is not None else decode_queries(outputs, model_type, canvas, 300)
        out = []
        for det in raw:
            keep = det["scores"] >= s.score_threshold
            det = {k: v[keep] for k, v in det.items()}
            if s.nms_threshold < 1.0 and len(det["scores"]):
                order = batched_nms(
                    det["boxes"].float(), det["scores"].float(), det["labels"], s.nms_threshold
                )
            else:
                order = det["scores"].argsort(descending=True)
            order = order[: s.max_detections]
            out.append({k: v[order] for k, v in det.items()})
        return out

    def to_original(self, det: dict[str, torch.Tensor], scale: float, size) -> dict[str, torch.Tensor]:
        """Canvas detections -> the image's own pixels (masks cropped to the image and resized)."""
        h, w = (int(v) for v in size)
        out = {
            "boxes": NeuroDetectionProcessor.to_original(det["boxes"].float().cpu(), scale, (h, w)),
            "scores": det["scores"].float().cpu(),
            "labels": det["labels"].long().cpu(),
        }
        if "masks" in det:
            m = det["masks"].float().cpu()
            m = m.reshape(len(m), 1, *m.shape[-2:])[
                ..., : max(round(h * scale), 1), : max(round(w * scale), 1)
            ]
            if len(m):
                m = torch.nn.functional.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
            out["masks"] = (
                m.reshape(len(m), h, w) >= 0.5 if len(m) else torch.zeros(0, h, w, dtype=torch.bool)
            )
        return out

    def metric_inputs(self, outputs: dict[str, Any], inputs: dict[str, Any]) -> tuple[list, list]:
        references = [{k: v.cpu() for k, v in ref.items()} for ref in inputs["references"]]
        return self.records(outputs), references

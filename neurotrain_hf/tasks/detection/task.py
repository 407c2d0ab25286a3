"""``DetectionTask``: the detection hooks the generic runner, Tester and Predictor call.

Inference settings (canvas size, score threshold, NMS, max detections) are written into the saved
``config.json`` (``neurotrain_inference``), so the Predictor reproduces the Tester from the folder alone.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..base import Task, TaskData
from .data import prepare
from .inference import DetectionInference
from .trainer import DetectionTrainer

TORCHVISION_DETECTORS = ("fasterrcnn", "retinanet", "fcos", "maskrcnn")


class DetectionTask(Task):
    """Images -> boxes (and masks); models load with ``AutoModelForObjectDetection``."""

    name = "detection"
    auto_model = "AutoModelForObjectDetection"
    hub_task = "object-detection"
    description = "object detection"

    def metric_protocol(self, key: str, config: dict[str, Any]) -> str:
        kind = "instance masks" if key.startswith("segm_") else "boxes"
        base = key.removeprefix("segm_")
        if base.startswith(("map", "mar")):
            return (
                f"{key}: COCO {base} over {kind} (pycocotools protocol, image pixels, crowd regions ignored)"
            )
        if base.startswith("f1"):
            return f"{key}: F1 at IoU 0.{base[3:]} of detections above the score threshold, averaged over classes"
        return key

    def prepare_data(self, config) -> TaskData:
        return prepare(config)

    def build_model(self, config, data: TaskData) -> Any:
        """The registry's model; torchvision detectors get the canvas size (``[training] image_size``)."""
        from ...models import get_model

        kwargs = dict(config.model.kwargs or {})
        if config.model.name in TORCHVISION_DETECTORS:
            kwargs.setdefault("image_size", config.training.image_size)
        return get_model(
            config.model.name,
            {**asdict(config.model), "kwargs": kwargs},
            num_labels=data.info.num_labels,
            in_channels=3,
            label_names=data.info.label_names,
            auto_class=self.auto_model,
        )

    def build_trainer(self, config, model, data: TaskData, callbacks: list | None = None):
        args = config.training
        model.config.neurotrain_inference = {
            "image_size": args.image_size,
            "score_threshold": args.score_threshold,
            "nms_threshold": args.nms_threshold,
            "max_detections": args.max_detections,
            "model_type": getattr(model.config, "model_type", ""),
        }
        return DetectionTrainer(
            model,
            args,
            train_dataset=data.splits["train"],
            eval_dataset=data.splits.get("valid"),
            label_names=data.info.label_names,
            masks=data.info.masks,
            inference=self.inference(model.config),
            callbacks=callbacks,
        )

    def inference(self, model_config: Any = None) -> DetectionInference:
        settings = dict(getattr(model_config, "neurotrain_inference", None) or {})
        settings.setdefault("model_type", getattr(model_config, "model_type", ""))
        return DetectionInference(**settings)

    def predictions(self, outputs: Any, model: Any) -> list[dict[str, Any]]:
        """Per image: boxes (xyxy, image pixels), scores, labels, label names (and masks)."""
        names = getattr(model.config, "id2label", {})
        records = self.inference(model.config).records(outputs)
        for record in records:
            record["label_names"] = [names.get(int(i), str(int(i))) for i in record["labels"]]
        return records

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        top = [
            {"label": name, "score": round(float(s), 4), "box": [round(float(v), 1) for v in box]}
            for name, s, box in zip(record["label_names"], record["scores"], record["boxes"])
        ]
        return {"detections": len(top), "top": top[:10]}

    def save_prediction(self, record: dict[str, Any], source, out_dir) -> list[Path]:
        """``<name>_detections.png``: the image with its detections drawn."""
        import numpy as np

        from ...data.images import decode_image
        from .drawing import draw_detections

        out = Path(out_dir or "predictions")
        image = decode_image(str(source), 3).permute(1, 2, 0).numpy().astype(np.uint8)
        names = list(dict.fromkeys(record["label_names"]))
        mapping = {int(i): n for i, n in zip(record["labels"], record["label_names"])}
        labels = [mapping.get(i, str(i)) for i in range(max(mapping, default=-1) + 1)] if names else []
        return [
            draw_detections(
                out / f"{Path(str(source)).stem}_detections.png", image, record, None, labels, 0.0
            )
        ]

    def probe_inputs(self, model: Any) -> dict[str, Any]:
        import torch

        size = (getattr(model.config, "neurotrain_inference", None) or {}).get("image_size", 64)
        return {"pixel_values": torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))}

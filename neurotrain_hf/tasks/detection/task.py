"""``DetectionTask``: the detection hooks the generic runner, Tester and Predictor call.

The score threshold, NMS and the number of detections are one ``DetectionSettings`` object written into
the saved ``config.json``; the canvas size lives with the processor (``[augmentation] image_size``), and
torchvision detectors are built for it. The Tester writes the COCO results json of the split (merged from
every rank's part), the split as COCO ground truth, per-image rows and drawings.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ...errors import ConfigError, NeuroTrainError
from ..base import OnnxGraph, SampleBatch, TaskData, TestOutputs
from ..image_task import ImageTask
from . import outputs
from .data import prepare
from .inference import DetectionInference, DetectionSettings
from .trainer import DetectionTrainer

TORCHVISION_DETECTORS = ("fasterrcnn", "retinanet", "fcos", "maskrcnn")


class DetectionTask(ImageTask):
    """Images -> boxes (and masks); models load with ``AutoModelForObjectDetection``."""

    name = "detection"
    auto_model = "AutoModelForObjectDetection"
    hub_task = "object-detection"
    description = "object detection"

    @classmethod
    def claims(cls, model_config: dict[str, Any]) -> bool:
        return any(a.endswith("ForObjectDetection") for a in model_config.get("architectures") or [])

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
        """The registry's model; torchvision detectors are built for the processor's canvas."""
        from ...models import get_model

        kwargs = dict(config.model.kwargs or {})
        size = data.processor.image_size
        if config.model.name in TORCHVISION_DETECTORS:
            if kwargs.get("image_size", size) != size:
                raise ConfigError(
                    f"[model] kwargs image_size = {kwargs['image_size']}: the canvas is [augmentation] image_size "
                    f"= {size}; set it there"
                )
            kwargs["image_size"] = size
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
        settings = DetectionSettings(args.score_threshold, args.nms_threshold, args.max_detections)
        settings.save(model.config)
        return DetectionTrainer(
            model,
            args,
            train_dataset=data.splits["train"],
            eval_dataset=data.splits.get("valid"),
            masks=data.info.masks,
            inference=self.inference(model.config),
            callbacks=callbacks,
        )

    def settings(self, model_config: Any) -> DetectionSettings:
        return DetectionSettings.of(model_config)

    def inference(self, model_config: Any = None) -> DetectionInference:
        return DetectionInference(DetectionSettings.of(model_config), getattr(model_config, "model_type", ""))

    # --- prediction ---------------------------------------------------------------------------------
    def preprocess(self, processor: Any, items, settings: Any = None) -> dict[str, Any]:
        """The processor's model inputs plus each image's own (height, width)."""
        from ...data.images import upright_hw

        inputs = dict(processor(list(items), return_tensors="pt"))
        inputs["original_size"] = torch.tensor([upright_hw(item) for item in items])
        return inputs

    def predictions(self, outputs: Any, model: Any, inputs=None, settings=None) -> list[dict[str, Any]]:
        """Per image: boxes (xyxy, image pixels), scores, labels, label names (and masks)."""
        inference = DetectionInference(
            settings or DetectionSettings.of(model.config), model.config.model_type
        )
        names = getattr(model.config, "id2label", {})
        records = inference.records(outputs)
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
        """``<name>_detections.png``: the image with its detections drawn (with ``out_dir``)."""
        return outputs.save_prediction(record, source, out_dir)

    def probe_inputs(self, model: Any) -> dict[str, Any]:
        size = getattr(model.config, "image_size", None) or 64
        return {"pixel_values": torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))}

    # --- test outputs ---------------------------------------------------------------------------------
    def sample_records(self, batch: SampleBatch, out: TestOutputs) -> list[dict[str, Any]]:
        return outputs.sample_records(batch, out)

    def write_samples(self, batch: SampleBatch, out: TestOutputs) -> None:
        outputs.write_samples(batch, out)

    def finish_outputs(self, out: TestOutputs) -> None:
        outputs.finish_outputs(out)

    def build_demo(self, folder: Path, model_name: str, examples: Any = None, **options: Any) -> Any:
        from .demo import build_demo

        return build_demo(folder, model_name, examples, **options)

    def onnx_graphs(self, model: Any, batch: dict[str, Any]) -> list[OnnxGraph]:
        raise NeuroTrainError(
            "the detection task has no ONNX export: its models return a variable number of boxes per image "
            "after in-graph post-processing (NMS, the DETR matcher's top-k), which no parity-checked graph covers yet"
        )

"""The detection task's sections: ``[training]`` (``DetectionConfig``), ``[dataset]`` and ``[augmentation]``
(which holds the processor's canvas size, ``image_size``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...config.fields import ColorJitterFields, ColumnFields, FlipFields
from ...config.sections import AugmentationConfig, DatasetConfig
from ...trainer.neuro_config import NeuroTrainingArguments
from . import metrics as _metrics  # noqa: F401  (registers the detection metric family)

DEFAULT_METRICS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100", "f1_50"]


@dataclass
class DetectionDataset(ColumnFields, DatasetConfig):
    """``[dataset]`` of detection: images with boxes (and instance masks) in COCO, VOC, YOLO or Hub layouts."""

    name: str = field(
        default="synthetic_shapes_detection",
        metadata={"help": "Registered dataset name; `neurotrain list datasets` shows them."},
    )
    split_file: str | None = field(
        default=None,
        metadata={
            "help": "`coco_json`: the COCO instances json (file names relative to root); `yolo`: the "
            "`data.yaml` (default: root/data.yaml)."
        },
    )


@dataclass
class DetectionAugmentation(FlipFields, ColorJitterFields, AugmentationConfig):
    """``[augmentation]`` of detection: the letterbox canvas (saved in the processor) and box-aware ops."""

    image_size: int = field(
        default=128,
        metadata={
            "help": "Canvas of the processor: images are resized (longer side, aspect kept) and padded to this "
            "square; torchvision detectors are built for it.",
            "min": 16,
        },
    )
    crop_probability: float = field(
        default=0.0,
        metadata={"help": "Probability of a random crop (scale 0.5-1 of each side).", "min": 0.0, "max": 1.0},
    )
    min_visible: float = field(
        default=0.4,
        metadata={
            "help": "Random crops keep a box when at least this fraction of it stays in the crop (else it is "
            "dropped and counted).",
            "min": 0.0,
            "max": 1.0,
        },
    )


@dataclass
class DetectionConfig(NeuroTrainingArguments):
    """Detection: the model's own loss (DETR family) or torchvision's loss dict, each term logged; COCO mAP."""

    metric_families = ("detection",)
    # keys older configs set in [training]; read from there into [augmentation], with a note
    moved_keys: ClassVar[dict[str, str]] = {
        "image_size": "augmentation",
        "crop_probability": "augmentation",
        "min_visible": "augmentation",
    }

    metrics: list[str] | None = field(
        default_factory=lambda: list(DEFAULT_METRICS),
        metadata={
            "help": "COCO metrics (pycocotools protocol, streamed): map, map_50, map_75, map_small/medium/large, "
            "mar_1/10/100, mar_small/medium/large, f1_50, f1_75; `segm_<name>` for instance masks."
        },
    )
    metric_for_best_model: str | None = field(
        default="map", metadata={"help": "Metric that picks the best checkpoint."}
    )
    score_threshold: float = field(
        default=0.05,
        metadata={
            "help": "Detections scoring below this are dropped (evaluation, Tester, Predictor).",
            "min": 0.0,
            "max": 1.0,
        },
    )
    nms_threshold: float = field(
        default=0.5,
        metadata={"help": "Class-wise non-maximum suppression IoU (1.0 = off).", "min": 0.0, "max": 1.0},
    )
    max_detections: int = field(default=100, metadata={"help": "Detections kept per image.", "min": 1})
    f1_score_threshold: float = field(
        default=0.5,
        metadata={
            "help": "Score a detection needs to count for f1_50 / f1_75 and the per-image CSV.",
            "min": 0.0,
            "max": 1.0,
        },
    )
    drawings: int = field(
        default=8,
        metadata={"help": "Test images the Tester draws with their boxes, labels and scores.", "min": 0},
    )

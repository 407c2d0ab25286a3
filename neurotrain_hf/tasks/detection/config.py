"""``DetectionConfig``: the ``[training]`` section of object-detection / instance-segmentation experiments."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...trainer.neuro_config import NeuroTrainingArguments

DEFAULT_METRICS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100", "f1_50"]


@dataclass
class DetectionConfig(NeuroTrainingArguments):
    """Detection: the model's own loss (DETR family) or torchvision's loss dict, each term logged; COCO mAP."""

    image_size: int = field(
        default=128,
        metadata={
            "help": "Images are resized (longer side, aspect kept) and padded to this square.",
            "min": 16,
        },
    )
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
    min_visible: float = field(
        default=0.4,
        metadata={
            "help": "Random crops keep a box when at least this fraction of it stays in the crop (else it is "
            "dropped and counted).",
            "min": 0.0,
            "max": 1.0,
        },
    )
    crop_probability: float = field(
        default=0.0,
        metadata={"help": "Probability of a random crop (scale 0.5-1 of each side).", "min": 0.0, "max": 1.0},
    )
    drawings: int = field(
        default=8,
        metadata={"help": "Test images the Tester draws with their boxes, labels and scores.", "min": 0},
    )

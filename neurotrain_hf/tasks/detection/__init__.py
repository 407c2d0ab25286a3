"""Object detection and instance segmentation: COCO, VOC, YOLO, Hub datasets, synthetic shapes."""

from .. import TaskSpec

SPEC = TaskSpec(
    name="detection",
    task="neurotrain_hf.tasks.detection.task:DetectionTask",
    training="neurotrain_hf.tasks.detection.config:DetectionConfig",
    dataset="neurotrain_hf.tasks.detection.config:DetectionDataset",
    augmentation="neurotrain_hf.tasks.detection.config:DetectionAugmentation",
    sources="neurotrain_hf.tasks.detection.data",
    models="neurotrain_hf.tasks.detection.models",
    default_model="fasterrcnn",
    description="Object detection and instance segmentation (COCO, VOC, YOLO, Hub, synthetic shapes).",
)

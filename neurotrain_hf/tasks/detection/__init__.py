"""Object detection and instance segmentation: COCO, VOC, YOLO, Hub and synthetic shapes; DETR family and torchvision."""

from .. import TaskSpec, register_task

register_task(
    TaskSpec(
        name="detection",
        config="neurotrain_hf.tasks.detection.config:DetectionConfig",
        task="neurotrain_hf.tasks.detection.task:DetectionTask",
        sources="neurotrain_hf.tasks.detection.data",
        description="Object detection / instance segmentation (COCO, VOC, YOLO, Hub; DETR family, torchvision).",
    )
)

"""neurotrain/detection_map: COCO box mAP/mAR equal to pycocotools COCOeval (and much faster), plus F1 at IoU 0.5/0.75.

The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""

from neurotrain_hf.metrics.evaluate_modules import DetectionMAP  # noqa: F401

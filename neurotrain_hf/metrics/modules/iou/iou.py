"""neurotrain/iou: Intersection over union per class for 2D/3D integer label maps, equal to MONAI compute_iou.

The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""

from neurotrain_hf.metrics.evaluate_modules import IoU  # noqa: F401

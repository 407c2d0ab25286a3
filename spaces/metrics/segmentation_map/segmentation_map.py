"""neurotrain/segmentation_map: COCO mask mAP/mAR equal to pycocotools COCOeval with iouType='segm'.

The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""

from neurotrain_hf.metrics.evaluate_modules import SegmentationMAP  # noqa: F401

"""``DetectionMetrics``: COCO box (and mask) metrics streamed per batch, per rank, merged once.

The one implementation is ``metrics.detection.DetectionAccumulator`` (pycocotools' protocol, also behind
the ``neurotrain/detection_map`` and ``segmentation_map`` evaluate modules): boxes give ``map``,
``map_50``, ..., ``f1_50``; instance masks the same names prefixed ``segm_``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import ConfigError
from ...metrics.detection import SUMMARY_KEYS, DetectionAccumulator
from ...metrics.registry import merge_state, register_family

BOX_METRICS = (*SUMMARY_KEYS, "f1_50", "f1_75")
ALL_METRICS = (*BOX_METRICS, *(f"segm_{n}" for n in BOX_METRICS))


class DetectionMetrics:
    """Streaming COCO evaluation of per-image prediction / reference dicts (image pixels, xyxy)."""

    def __init__(self, names: Sequence[str], masks: bool = False, score_threshold: float = 0.5) -> None:
        unknown = sorted(set(names) - set(ALL_METRICS))
        if unknown:
            raise ConfigError(
                f"[training] metrics: unknown {unknown}; detection has {', '.join(BOX_METRICS)} (and segm_*)"
            )
        self.names = list(names)
        self.boxes = DetectionAccumulator("bbox", score_threshold=score_threshold)
        wants_masks = masks and any(n.startswith("segm_") for n in self.names)
        self.masks = DetectionAccumulator("segm", score_threshold=score_threshold) if wants_masks else None

    def reset(self) -> None:
        self.boxes.reset()
        if self.masks is not None:
            self.masks.reset()

    def update(self, predictions: list[dict[str, Any]], references: list[dict[str, Any]]) -> None:
        self.boxes.update(predictions, references)
        if self.masks is not None:
            self.masks.update(predictions, references)

    def merge(self, other: DetectionMetrics) -> None:
        merge_state(self.boxes, other.boxes)
        if self.masks is not None:
            merge_state(self.masks, other.masks)

    def compute(self, keys: Sequence[str] | None = None) -> dict[str, float]:
        out = {k: v for k, v in self.boxes.compute().items() if k in self.names}
        if self.masks is not None:
            out.update({f"segm_{k}": v for k, v in self.masks.compute().items() if f"segm_{k}" in self.names})
        return out


register_family("detection", ALL_METRICS)(DetectionMetrics)  # built from the names and the trainer's options

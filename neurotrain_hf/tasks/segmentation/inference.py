"""``SegmentationInference``: full-image or sliding-window outputs, then label maps for the metrics.

``full``: the image is padded to a multiple of the network's pooling factor and cropped back.
``sliding``: MONAI's ``SlidingWindowInferer`` (window ``roi_size``, ``overlap``, Gaussian or constant
blending). Either way the metrics receive a foreground-probability map (binary heads) and label maps,
computed on each rank before anything else happens to them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import SemanticSegmenterOutput

from ...models.registry import logits_of
from ...trainer.inference import Inference


class SegmentationInference(Inference):
    """Dense logits by full-image or sliding-window inference; (probability, labels) for the metrics."""

    def __init__(
        self,
        mode: str = "full",
        roi_size: int | None = None,
        overlap: float = 0.5,
        sw_batch_size: int = 8,
        blend: str = "gaussian",
        pad_multiple: int = 1,
        threshold: float = 0.5,
    ) -> None:
        super().__init__(("pixel_values",))
        self.mode, self.roi_size, self.overlap = mode, roi_size, overlap
        self.sw_batch_size, self.blend = sw_batch_size, blend
        self.pad_multiple, self.threshold = pad_multiple, threshold

    def _forward_padded(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        m = self.pad_multiple
        pads = [(-s) % m for s in size]
        if any(pads):
            spec = [p for pad in reversed(pads) for p in (0, pad)]
            x = F.pad(x, spec, mode="constant")
        logits = logits_of(model(pixel_values=x))
        if logits.shape[2:] != x.shape[2:]:  # heads predicting at a lower resolution (SegFormer: 1/4)
            mode = "bilinear" if x.dim() == 4 else "trilinear"
            logits = F.interpolate(logits, size=x.shape[2:], mode=mode, align_corners=False)
        return logits[(..., *[slice(0, s) for s in size])]

    def __call__(self, model: torch.nn.Module, inputs: dict[str, Any]) -> SemanticSegmenterOutput:
        x = inputs["pixel_values"]
        if self.mode == "sliding":
            from monai.inferers import SlidingWindowInferer

            roi = [self.roi_size] * (x.dim() - 2)
            inferer = SlidingWindowInferer(roi, self.sw_batch_size, self.overlap, mode=self.blend)
            logits = inferer(x, lambda t: self._forward_padded(model, t))
        else:
            logits = self._forward_padded(model, x)
        return SemanticSegmenterOutput(logits=logits)

    def metric_inputs(self, outputs: Any, inputs: dict[str, Any]) -> tuple[dict, dict]:
        logits = logits_of(outputs).float()
        if logits.shape[1] == 1:
            probability = torch.sigmoid(logits[:, 0])
            labels = (probability >= self.threshold).long()
        else:
            probability = torch.softmax(logits, 1)[:, 1] if logits.shape[1] == 2 else None
            labels = logits.argmax(1)
        references = {
            "labels": inputs.get("labels"),
            "fov": inputs.get("fov"),
            "source": inputs.get("source"),
        }
        return {"probability": probability, "labels": labels}, references

"""``SegmentationInference``: full-image or sliding-window outputs, then label maps for the metrics.

``full``: the image is padded to a multiple of the network's pooling factor and cropped back.
``sliding``: MONAI's ``SlidingWindowInferer`` (window ``roi_size``, ``overlap``, Gaussian or constant
blending). ``mirror_axes``: test-time flips, the logits averaged over every combination of flips of
those spatial axes (nnU-Net's mirroring). Volumes carry their geometry (``src_affine``, ``dst_affine``,
``dst_shape``): logits are resampled from the preprocessed grid onto the original file's voxel grid
before the loss, the metrics and the Predictor see them. The metrics receive a foreground-probability
map (binary heads) and label maps, computed on each rank before anything else happens to them.
"""

from __future__ import annotations

from itertools import combinations
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
        mirror_axes: list[int] | None = None,
    ) -> None:
        super().__init__(("pixel_values",))
        self.mode, self.overlap = mode, overlap
        self.roi_size = roi_size
        self.sw_batch_size, self.blend = sw_batch_size, blend
        self.pad_multiple, self.threshold = pad_multiple, threshold
        self.mirror_axes = list(mirror_axes or [])

    def _roi(self, x: torch.Tensor) -> list[int]:
        roi = self.roi_size if isinstance(self.roi_size, (list, tuple)) else [self.roi_size] * (x.dim() - 2)
        return [int(r) for r in roi]

    def _logits(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "sliding":
            from monai.inferers import SlidingWindowInferer

            inferer = SlidingWindowInferer(self._roi(x), self.sw_batch_size, self.overlap, mode=self.blend)
            return inferer(x, lambda t: self._forward_padded(model, t))
        return self._forward_padded(model, x)

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
        logits = self._logits(model, x)
        flips = [c for k in range(1, len(self.mirror_axes) + 1) for c in combinations(self.mirror_axes, k)]
        for axes in flips:  # spatial axis a is tensor dim a + 2
            dims = [a + 2 for a in axes]
            logits = logits + self._logits(model, x.flip(dims)).flip(dims)
        logits = logits / (len(flips) + 1)
        if inputs.get("dst_affine") is not None:
            logits = self.restore(logits, inputs)
        return SemanticSegmenterOutput(logits=logits)

    @staticmethod
    def restore(logits: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """Logits on the preprocessed grid -> each volume's original voxel grid (one volume per batch)."""
        from ...data.volume_processor import NeuroVolumeProcessor

        if logits.shape[0] != 1:
            raise ValueError("volumes are evaluated one per batch (per_device_eval_batch_size = 1)")
        shape = [int(s) for s in inputs["dst_shape"][0].tolist()]
        out = NeuroVolumeProcessor.restore(
            logits[0].float(), inputs["src_affine"][0], inputs["dst_affine"][0], shape
        )
        return out[None].to(logits.device)

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
            "spacing": inputs.get("spacing"),
        }
        return {"probability": probability, "labels": labels}, references

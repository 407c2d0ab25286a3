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
from .postprocess import scores_to_labels
from .settings import SegmentationSettings
from .unet import pad_to_multiple


class SegmentationInference(Inference):
    """Dense logits by full-image or sliding-window inference; (probability, labels) for the metrics."""

    def __init__(self, settings: SegmentationSettings | None = None) -> None:
        super().__init__(("pixel_values",))
        self.settings = settings or SegmentationSettings()

    def _roi(self, x: torch.Tensor) -> list[int]:
        roi = self.settings.roi_size
        roi = roi if isinstance(roi, (list, tuple)) else [roi] * (x.dim() - 2)
        return [int(r) for r in roi]

    def _logits(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        s = self.settings
        if s.mode == "sliding":
            from monai.inferers import SlidingWindowInferer

            inferer = SlidingWindowInferer(self._roi(x), s.sw_batch_size, s.overlap, mode=s.blend)
            return inferer(x, lambda t: self._forward_padded(model, t))
        return self._forward_padded(model, x)

    def _forward_padded(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        padded, crop = pad_to_multiple(x, self.settings.pad_multiple)
        logits = logits_of(model(pixel_values=padded))
        if logits.shape[2:] != padded.shape[2:]:  # heads predicting at a lower resolution (SegFormer: 1/4)
            mode = "bilinear" if x.dim() == 4 else "trilinear"
            logits = F.interpolate(logits, size=padded.shape[2:], mode=mode, align_corners=False)
        return logits[crop]

    def __call__(self, model: torch.nn.Module, inputs: dict[str, Any]) -> SemanticSegmenterOutput:
        x = inputs["pixel_values"]
        logits = self._logits(model, x)
        mirror_axes = self.settings.mirror_axes
        flips = [c for k in range(1, len(mirror_axes) + 1) for c in combinations(mirror_axes, k)]
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
        from .volume_processor import NeuroVolumeProcessor

        if logits.shape[0] != 1:
            raise ValueError("volumes are evaluated one per batch (per_device_eval_batch_size = 1)")
        shape = [int(s) for s in inputs["dst_shape"][0].tolist()]
        out = NeuroVolumeProcessor.restore(
            logits[0].float(), inputs["src_affine"][0], inputs["dst_affine"][0], shape
        )
        return out[None].to(logits.device)

    def metric_inputs(self, outputs: Any, inputs: dict[str, Any]) -> tuple[dict, dict]:
        labels, probability = scores_to_labels(logits_of(outputs), self.settings.threshold_value)
        references = {
            "labels": inputs.get("labels"),
            "fov": inputs.get("fov"),
            "source": inputs.get("source"),
            "spacing": inputs.get("spacing"),
        }
        return {"probability": probability, "labels": labels}, references

"""``NeuroDetectionProcessor``: letterbox preprocessing for detectors, saved beside every detection model.

An image (any mode, EXIF applied) is converted to RGB, resized so its longer side is ``image_size`` (aspect
kept), padded at the bottom/right to an ``image_size`` square (the one place the canvas size lives: torchvision
detectors are built for it), scaled to [0, 1] and normalised; batches carry ``pixel_mask`` (1 on real
pixels). Detections on the canvas map back to an image's own pixels with the scale ``image_size`` over its
longer side (``to_original``). The training transform and evaluation use ``letterbox``, so the Predictor
sees exactly what the Tester saw; ``post_process_object_detection`` (what
``transformers.pipeline("object-detection")`` calls) decodes with the model's saved settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from ...data.images import decode_image, to_float
from ...data.processor import ModelConfigMixin

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int, float]:
    """(new height, new width, scale) with the longer side ``size``."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale)), scale


class NeuroDetectionProcessor(ModelConfigMixin, BaseImageProcessor):
    """Image -> normalised ``image_size`` square canvas (letterbox) with its mask, scale and original size."""

    model_input_names = ["pixel_values", "pixel_mask"]

    def __init__(
        self,
        image_size: int = 128,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_size = int(image_size)
        self.image_mean = list(image_mean or IMAGENET_MEAN)
        self.image_std = list(image_std or IMAGENET_STD)

    def normalize_canvas(self, image: torch.Tensor) -> torch.Tensor:
        """(3, S, S) uint8 or float in [0, 1] -> normalised float32."""
        x = to_float(image)
        mean = torch.as_tensor(self.image_mean, dtype=x.dtype).view(-1, 1, 1)
        std = torch.as_tensor(self.image_std, dtype=x.dtype).view(-1, 1, 1)
        return (x - mean) / std

    def letterbox(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(3, H, W) -> (canvas (3, S, S) normalised, pixel mask (S, S), scale)."""
        from torchvision.transforms.v2 import functional as TF

        h, w = image.shape[-2:]
        nh, nw, scale = letterbox_size(h, w, self.image_size)
        resized = TF.resize(image, [nh, nw], antialias=True)
        canvas = torch.zeros(3, self.image_size, self.image_size)
        canvas[:, :nh, :nw] = self.normalize_canvas(resized)
        mask = torch.zeros(self.image_size, self.image_size, dtype=torch.long)
        mask[:nh, :nw] = 1
        return canvas, mask, scale

    @staticmethod
    def to_original(boxes: torch.Tensor, scale: float, original_size: Sequence[int]) -> torch.Tensor:
        """Canvas xyxy boxes -> the image's own pixels, clipped to it."""
        h, w = (int(v) for v in original_size)
        out = boxes / scale
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
        return out

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """One image or a list -> the model inputs ``pixel_values`` (B, 3, S, S) and ``pixel_mask``."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        boxes = [self.letterbox(decode_image(image, 3)) for image in images]
        data = {
            "pixel_values": torch.stack([b[0] for b in boxes]),
            "pixel_mask": torch.stack([b[1] for b in boxes]),
        }
        return BatchFeature(data, tensor_type=return_tensors)

    def post_process_object_detection(
        self, outputs: Any, threshold: float = 0.5, target_sizes: Any = None
    ) -> list[dict[str, torch.Tensor]]:
        """Per image: ``scores``, ``labels`` and xyxy ``boxes`` in its own pixels (``target_sizes``: (height,
        width) each; default the canvas), above ``threshold``, after the model's saved NMS and top-k."""
        from ..base import SETTINGS_KEY
        from .inference import DetectionInference, DetectionSettings

        config = self.model_config or {}
        settings = DetectionSettings.from_dict(config.get(SETTINGS_KEY))
        settings.score_threshold = float(threshold)
        inference = DetectionInference(settings, model_type=config.get("model_type", ""))
        batch = (
            len(outputs["detections"]) if outputs.get("detections") is not None else len(outputs["logits"])
        )
        sizes = target_sizes if target_sizes is not None else [(self.image_size, self.image_size)] * batch
        result = {"outputs": outputs, "canvas": self.image_size, "original_size": torch.as_tensor(sizes)}
        return [
            {"scores": r["scores"], "labels": r["labels"], "boxes": r["boxes"]}
            for r in inference.records(result)
        ]

    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, **kwargs)

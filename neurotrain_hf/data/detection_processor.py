"""``NeuroDetectionProcessor``: letterbox preprocessing for detectors, saved beside every detection model.

An image (any mode, EXIF applied) is converted to RGB, resized so its longer side is ``image_size`` (aspect
kept), padded at the bottom/right to an ``image_size`` square, scaled to [0, 1] and normalised. Batches carry
``pixel_mask`` (1 on real pixels), each image's ``scale`` and ``original_size`` so detections on the canvas map
back to the image's own pixels (``to_original``). The training transform and evaluation use ``letterbox``, so
the Predictor sees exactly what the Tester saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .images import decode_image, to_float

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int, float]:
    """(new height, new width, scale) with the longer side ``size``."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale)), scale


class NeuroDetectionProcessor(BaseImageProcessor):
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
        """One image or a list -> ``pixel_values`` (B, 3, S, S), ``pixel_mask``, ``scale``, ``original_size``."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        items = [decode_image(image, 3) for image in images]
        boxes = [self.letterbox(t) for t in items]
        data = {
            "pixel_values": torch.stack([b[0] for b in boxes]),
            "pixel_mask": torch.stack([b[1] for b in boxes]),
            "scale": torch.tensor([b[2] for b in boxes], dtype=torch.float64),
            "original_size": torch.tensor([list(t.shape[-2:]) for t in items], dtype=torch.long),
        }
        return BatchFeature(data, tensor_type=return_tensors)

    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, **kwargs)

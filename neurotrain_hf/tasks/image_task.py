"""``ImageTask``: the prediction hooks of tasks whose inputs are 2D images (shared by image tasks).

``neurotrain predict`` arguments are image files, checked before any model sees them (a missing or
undecodable file is one line naming it); images of one size go through the processor and the model
together; the processor is the image processor saved beside the model.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import torch

from ..data.images import inspect_image, upright_size
from ..errors import NeuroTrainError
from .base import OnnxGraph, Task


class LogitsGraph(torch.nn.Module):
    """``pixel_values -> logits`` of an image model, the graph an image task exports."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        from ..models.registry import logits_of

        return logits_of(self.model(pixel_values=pixel_values))


class ImageTask(Task):
    """A ``Task`` whose Predictor inputs are images (files, PIL images or arrays)."""

    processor_class = "AutoImageProcessor"

    def build_model(self, config, data) -> Any:
        """The registry's model sized for the data (``data.info``: num_labels, channels, label_names),
        built for the task's Auto class."""
        from ..models import get_model

        info = data.info
        return get_model(
            config.model.name,
            config.model,
            num_labels=info.num_labels,
            in_channels=info.channels,
            label_names=info.label_names,
            auto_class=self.auto_model,
        )

    def read_input(self, source: str | Path) -> str:
        if not Path(source).is_file():
            raise NeuroTrainError(f"{source}: file not found")
        error = inspect_image(str(source))["error"]
        if error:
            raise NeuroTrainError(f"{source}: cannot read this image ({error})")
        return str(source)

    def batch_key(self, item: Any) -> Hashable:
        return upright_size(item)

    def probe_inputs(self, model: Any) -> dict[str, Any]:
        """Two random images at the model's input size and channels."""
        config = model.config
        size = getattr(config, "image_size", None) or 32
        channels = getattr(config, "num_channels", None) or getattr(config, "in_channels", None) or 3
        generator = torch.Generator().manual_seed(0)
        return {"pixel_values": torch.randn(2, channels, size, size, generator=generator)}

    def onnx_graphs(self, model: Any, batch: dict[str, Any]) -> list[OnnxGraph]:
        """One graph: ``pixel_values -> logits``."""
        return [OnnxGraph("model", LogitsGraph(model), {"pixel_values": batch["pixel_values"]}, ["logits"])]

    def onnx_agreement(
        self, graph: str, reference: dict[str, Any], exported: dict[str, Any]
    ) -> dict[str, float]:
        """The share of equal decisions: the top label per image (logits ``[B, C]``) or per pixel / voxel
        (``[B, C, ...]``); one channel is read by its sign (probability 0.5)."""
        ref, got = reference["logits"], exported["logits"]
        if ref.ndim < 2:
            return {}
        same = (ref > 0) == (got > 0) if ref.shape[1] == 1 else ref.argmax(1) == got.argmax(1)
        return {"same_top_label" if ref.ndim == 2 else "same_mask_pixels": float(same.mean())}

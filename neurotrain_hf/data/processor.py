"""``NeuroImageProcessor``: the evaluation preprocessing, saved beside every model we train.

It is a transformers image processor (``preprocessor_config.json``, ``AutoImageProcessor`` after
``import neurotrain_hf``) and the one implementation of deterministic preprocessing: the training
transform, evaluation, the Tester, the Predictor and the demos all call it, so predictions made from
the saved folder equal those made during testing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .images import decode_image, match_channels, to_float


def read_model_config(path: Any, **kwargs: Any) -> dict[str, Any] | None:
    """The ``config.json`` beside a processor (a folder or a Hub repo), or None when there is none."""
    import json

    from transformers.utils import cached_file

    hub = {
        k: kwargs[k]
        for k in ("cache_dir", "revision", "token", "local_files_only", "subfolder")
        if k in kwargs
    }
    try:
        file = cached_file(
            str(path),
            "config.json",
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub,
        )
    except (OSError, ValueError):  # no such repo or folder, a gated repo, a name that is no repo id
        return None
    if file is None:
        return None
    with open(file, encoding="utf-8") as f:
        return json.load(f)


class ModelConfigMixin:
    """For processors whose ``post_process_*`` follows the settings saved with the model: loading one with
    ``from_pretrained`` (``AutoImageProcessor``, ``transformers.pipeline``) also reads the model folder's
    ``config.json`` into ``model_config``, which is never written into ``preprocessor_config.json`` (the
    settings stay in one place)."""

    model_config: dict[str, Any] | None = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        """The processor, with the model folder's ``config.json`` (None when there is none) attached."""
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)  # type: ignore[misc]
        processor = loaded[0] if isinstance(loaded, tuple) else loaded  # return_unused_kwargs=True
        processor.model_config = read_model_config(pretrained_model_name_or_path, **kwargs)
        return loaded

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()  # type: ignore[misc]
        out.pop("model_config", None)
        return out


class NeuroImageProcessor(BaseImageProcessor):
    """Decode (any mode, EXIF), convert to ``num_channels``, resize, center-crop, scale and normalise."""

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        num_channels: int = 3,
        size: int | None = None,
        crop_size: int | None = None,
        do_normalize: bool = True,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_channels = int(num_channels)
        self.size = size
        self.crop_size = crop_size
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean) if image_mean is not None else [0.5] * self.num_channels
        self.image_std = list(image_std) if image_std is not None else [0.5] * self.num_channels

    # --- the steps, shared with the training transform ---------------------------------------------
    def decode(self, images: Sequence[Any] | np.ndarray) -> list[torch.Tensor] | torch.Tensor:
        """Images -> CHW tensors (uint8 or float) with the model's channels, resized if ``size`` is set.

        A 4-D HWC array (a zero-copy batch of a fixed-shape column) stays one (B, C, H, W) tensor.
        """
        from torchvision.transforms.v2 import functional as TF

        if isinstance(images, np.ndarray) and images.ndim == 4 and images.dtype != object:
            batch = match_channels(
                torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2), self.num_channels
            )
            return TF.resize(batch, [self.size, self.size], antialias=True) if self.size else batch
        out = []
        for image in images:
            tensor = decode_image(image, self.num_channels)
            if self.size:
                tensor = TF.resize(tensor, [self.size, self.size], antialias=True)
            out.append(tensor)
        return out

    def finish(self, tensors: Sequence[torch.Tensor] | torch.Tensor, crop: bool = True) -> torch.Tensor:
        """(Center-crop,) stack, scale to [0, 1] and normalise -> (B, C, H, W) float32."""
        from torchvision.transforms.v2 import functional as TF

        if crop and self.crop_size:
            size = [self.crop_size, self.crop_size]
            tensors = (
                TF.center_crop(tensors, size)
                if torch.is_tensor(tensors)
                else [TF.center_crop(t, size) for t in tensors]
            )
        if not torch.is_tensor(tensors):
            shapes = {tuple(t.shape) for t in tensors}
            if len(shapes) > 1:
                raise ValueError(
                    f"images in one batch have different sizes {sorted(shapes)}: set [augmentation] resize"
                )
            dtypes = {t.dtype for t in tensors}
            tensors = torch.stack([to_float(t) for t in tensors] if len(dtypes) > 1 else list(tensors))
        x = to_float(tensors)
        if self.do_normalize:
            mean = torch.as_tensor(self.image_mean, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.as_tensor(self.image_std, dtype=x.dtype).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x.contiguous()

    # --- the transformers processor API ------------------------------------------------------------
    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """One image or a list of them -> ``BatchFeature(pixel_values=(B, C, H, W))``."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        pixel_values = self.finish(self.decode(images))
        return BatchFeature({"pixel_values": pixel_values}, tensor_type=return_tensors)

    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, **kwargs)


def image_stats(
    train, processor: NeuroImageProcessor, limit: int = 2000, chunk: int = 64
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of up to ``limit`` images of a split (after channel conversion, before scaling).

    Decoded ``chunk`` images at a time, so memory stays that of one chunk.
    """
    total = sq = 0.0
    count = 0
    for start in range(0, min(len(train), limit), chunk):
        rows = train.select(range(start, min(start + chunk, len(train), limit))).with_format("numpy")["image"]
        images = processor.decode(rows)
        for x in images if not torch.is_tensor(images) else [images]:
            x = to_float(x).double()
            dims = (0, 2, 3) if x.dim() == 4 else (1, 2)
            total = total + x.sum(dim=dims)
            sq = sq + (x * x).sum(dim=dims)
            count += x.numel() // x.shape[-3]
    mean = total / count
    std = (sq / count - mean**2).clamp_min(1e-12).sqrt().clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())

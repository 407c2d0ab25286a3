"""Predictor: batch and single-image prediction from a run folder or a model folder.

Images go through the same evaluation transform as in training (resize, crop, normalize); a
post-processing hook turns logits into the returned records (default: label, name and scores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.transforms import ImageBatchTransform
from .metrics.classification import softmax
from .model_io import load_model_dir
from .models.registry import logits_of

PostProcess = Callable[[np.ndarray, Sequence[str]], list[Any]]


def top_label(logits: np.ndarray, label_names: Sequence[str]) -> list[dict[str, Any]]:
    """Default post-processing: softmax scores, the arg-max label and its name."""
    probs = softmax(logits)
    return [
        {
            "label": int(p.argmax()),
            "label_name": label_names[int(p.argmax())],
            "score": float(p.max()),
            "scores": p.tolist(),
        }
        for p in probs
    ]


class Predictor:
    """Run a trained model on new images (PIL images or HWC arrays)."""

    def __init__(
        self, model: torch.nn.Module, config, info, postprocess: PostProcess = top_label, batch_size: int = 64
    ) -> None:
        self.model, self.config, self.info = model.eval(), config, info
        self.transform = ImageBatchTransform(config.augmentation, info.mean, info.std, train=False)
        self.postprocess = postprocess
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> Predictor:
        """From a model folder, or a run folder (uses its ``model/``)."""
        path = Path(path)
        if (path / "model").is_dir() and not (path / "model.safetensors").is_file():
            path = path / "model"
        model, config, info = load_model_dir(path)
        return cls(model, config, info, **kwargs)

    @torch.no_grad()
    def predict(self, images: Sequence[Any]) -> list[Any]:
        """Predict a list of images in batches."""
        device = next(self.model.parameters()).device
        out: list[Any] = []
        for start in range(0, len(images), self.batch_size):
            pixel_values = self.transform.images(list(images[start : start + self.batch_size]))
            logits = logits_of(self.model(pixel_values.to(device))).float().cpu().numpy()
            out.extend(self.postprocess(logits, self.info.label_names))
        return out

    def __call__(self, image: Any) -> Any:
        """Predict one image."""
        return self.predict([image])[0]

"""``SamplingInference``: evaluation, the Tester and the Predictor generate through one sampling loop.

Sample ``i`` of seed ``S`` starts from ``torch.Generator().manual_seed(S + i)`` (CPU generators, one per
sample, as diffusers pipelines take them), so a split's samples do not depend on batching or process
count, epochs compare on the same noise, and a saved pipeline reproduces them. Metric inputs are the
features of generated and real images through one feature network (``metrics.generation``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError
from ...trainer.inference import Inference
from .data import SAMPLE_ID
from .objective import diffusion_loss
from .pipeline import generate, sampling_scheduler


def sample_generators(seed: int, ids: Any) -> list[torch.Generator]:
    """One CPU generator per sample: ``seed + id``."""
    return [torch.Generator().manual_seed(int(seed) + int(i)) for i in ids]


def load_features(spec: str) -> Any:
    """The FID feature network: ``inception`` (local cache only) or a classifier run / model folder."""
    from ...metrics.generation import ClassifierFeatures, InceptionFeatures

    if spec == "inception":
        return InceptionFeatures()
    folder = Path(spec)
    if (folder / "model" / "config.json").is_file():
        folder = folder / "model"
    return ClassifierFeatures(folder)


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """Images (N, C, H, W) in [0, 1] as one PNG grid, written atomically."""
    import math

    from PIL import Image
    from torchvision.utils import make_grid

    nrow = nrow or max(1, math.ceil(math.sqrt(len(images))))
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, padding=2, pad_value=1.0)
    pixels = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(pixels).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


class SamplingInference(Inference):
    """Generate one image per input row (its class / mask, its fixed noise); with real images in the batch
    also the training loss on fixed noise and timesteps (a comparable ``eval_loss``)."""

    def __init__(
        self,
        settings: dict[str, Any],
        fid_features: str | None = None,
        fid_image_size: int | None = None,
        snr_gamma: float | None = None,
        segmenter: str | None = None,
    ) -> None:
        super().__init__(("pixel_values",))
        self.settings = dict(settings)
        self.fid_features, self.fid_image_size, self.snr_gamma = fid_features, fid_image_size, snr_gamma
        self.segmenter = segmenter
        self._segmenter: Any = None
        self._features: Any = None
        self._class_names: list[str] = []
        self._label_map: torch.Tensor | None = None
        self._keep, self._kept = 0, []

    def keep_samples(self, count: int) -> None:
        """Keep the first ``count`` generated images of the next evaluation (the grid)."""
        self._keep, self._kept = count, []

    def kept_samples(self) -> torch.Tensor | None:
        return torch.cat(self._kept)[: self._keep] if self._kept else None

    def __call__(self, model: torch.nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
        core = getattr(model, "module", model)
        self._class_names = list(core.config.class_names)
        ids = inputs[SAMPLE_ID].tolist()
        device = next(core.parameters()).device
        out: dict[str, Any] = {}
        if "pixel_values" in inputs:
            generator = torch.Generator(device=inputs["pixel_values"].device).manual_seed(
                int(self.settings["sample_seed"]) + int(ids[0])
            )
            out["losses"] = diffusion_loss(core, inputs, generator, snr_gamma=self.snr_gamma).detach()
            out["loss"] = out["losses"].mean()
        unet = core.sampling_unet()
        out["images"] = generate(
            unet,
            sampling_scheduler(core.noise_scheduler, self.settings["sampler"]),
            len(ids),
            class_labels=inputs.get("class_labels"),
            mask=inputs.get("mask"),
            guidance_scale=float(self.settings["guidance_scale"]),
            num_inference_steps=int(self.settings["sampling_steps"]),
            generator=sample_generators(0, inputs["noise_seed"].tolist())
            if "noise_seed" in inputs
            else sample_generators(self.settings["sample_seed"], ids),
            device=device,
        )
        if self._keep and sum(len(k) for k in self._kept) < self._keep:
            self._kept.append(out["images"].cpu())
        return out

    def feature_network(self) -> Any:
        if self._features is None and self.fid_features:
            self._features = load_features(self.fid_features)
        return self._features

    def segment(self, images: torch.Tensor) -> np.ndarray:
        """The segmenter's foreground (B, H, W) on generated images, through its own Predictor (its saved
        threshold and post-processing); records carry the label map as ``mask``."""
        if self._segmenter is None:
            from ...predictor import Predictor

            self._segmenter = Predictor.from_pretrained(self.segmenter)
        pixels = (images.float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        records = self._segmenter.predict([p[..., 0] if p.shape[-1] == 1 else p for p in pixels])
        return np.stack([record["mask"] > 0 for record in records])

    def classifier_ids(self, labels: torch.Tensor, features: Any) -> torch.Tensor:
        """Our class ids -> the feature classifier's, matched by class name (its folders may sort the
        classes differently); one line when a class has no match."""
        if self._label_map is None:
            id2label = getattr(getattr(features, "model", None), "config", None)
            theirs = {_name(v): int(k) for k, v in (getattr(id2label, "id2label", None) or {}).items()}
            missing = [n for n in self._class_names if _name(n) not in theirs]
            if missing:
                raise ConfigError(
                    f"[training] fid_features {self.fid_features}: the classifier has no class {missing[0]!r} "
                    f"(its classes: {', '.join(sorted(theirs))}); sample_accuracy needs the same classes"
                )
            self._label_map = torch.as_tensor([theirs[_name(n)] for n in self._class_names])
        return self._label_map[labels.cpu()]

    def metric_inputs(self, outputs: Any, inputs: dict[str, Any]) -> tuple[Any, Any]:
        predictions: dict[str, Any] = {"images": outputs["images"]}
        references: dict[str, Any] = {}
        if "pixel_values" in inputs:
            references["images"] = (inputs["pixel_values"] + 1) / 2
        class_labels = inputs.get("class_labels")
        if class_labels is not None:
            references["classes"] = class_labels  # our ids (the CSV); "labels": the classifier's
        if inputs.get("mask") is not None:
            references["mask"] = inputs["mask"] > 0
        if self.segmenter and inputs.get("mask") is not None:
            predictions["segmented"] = self.segment(outputs["images"])
        features = self.feature_network()
        if features is not None and "images" in references:
            from ...metrics.generation import resize_for_features

            size = self.fid_image_size or getattr(features, "size", None)  # the network's input size
            for side, images in ((predictions, outputs["images"]), (references, references["images"])):
                resized = resize_for_features(images.float().cpu(), size) if size else images.float().cpu()
                side["features"], side["logits"] = features(resized)
            del references["logits"]  # the classifier's view of real images is not a metric input
            if class_labels is not None and predictions["logits"] is not None:
                references["labels"] = self.classifier_ids(class_labels, features)
        elif class_labels is not None:
            references["labels"] = class_labels
        return predictions, references


def _name(label: Any) -> str:
    """A class name compared across label sets: lower case, spaces for underscores and dashes."""
    return " ".join(str(label).lower().replace("_", " ").replace("-", " ").split())

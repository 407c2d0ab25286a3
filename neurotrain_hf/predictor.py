"""Predictor: run a trained model folder on new inputs, the way the Tester evaluated it.

``Predictor.from_pretrained(path)`` takes a run folder (its ``model/``) or a model folder: the model
through the task's Auto class, the processor through ``AutoImageProcessor``, outputs through the
task's ``Inference`` hook and turned into records by the task's ``predictions``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .data.images import upright_size
from .errors import NeuroTrainError
from .tasks import get_task
from .tasks.base import TASK_KEY


def model_folder(path: str | Path) -> Path:
    """A model folder from a run folder, a model folder or a Hub repo id (snapshotted into the cache)."""
    if not Path(path).exists() and str(path).count("/") == 1 and not str(path).startswith((".", "/")):
        from .hub import pull

        path = pull(str(path))
    path = Path(path)
    if (path / "model" / "config.json").is_file():
        return path / "model"
    if (path / "config.json").is_file():
        return path
    raise NeuroTrainError(f"{path}: not a run folder or model folder (no config.json)")


def task_of(folder: Path) -> str:
    """The task that trained a model folder (``neurotrain_task`` in config.json; else by architecture)."""
    return task_of_config(json.loads((folder / "config.json").read_text(encoding="utf-8")), folder)


def task_of_config(config: dict[str, Any], where: Any = "model") -> str:
    """The task of a model config: ``neurotrain_task``, else told by its architecture."""
    if config.get(TASK_KEY):
        return config[TASK_KEY]
    architectures = config.get("architectures") or []
    if any(a.endswith("ForImageClassification") for a in architectures):
        return "classification"
    if any(a.endswith("ForSemanticSegmentation") for a in architectures):
        return "segmentation"
    if any(a.endswith("ForObjectDetection") for a in architectures):
        return "detection"
    if config.get("text_config") and config.get("vision_config"):
        return "clip"
    raise NeuroTrainError(f"{where}: cannot tell the task of this model (architectures {architectures})")


def check_inputs(paths: Sequence[str | Path]) -> None:
    """Every file exists and decodes; else one line naming the first bad one."""
    from .data.images import inspect_image
    from .data.nifti import header_info, is_nifti

    for path in paths:
        if Path(path).is_dir() or is_nifti(path):  # a volume, or a case folder of channel volumes
            if Path(path).is_file():
                header_info([str(path)])
            elif not Path(path).is_dir():
                raise NeuroTrainError(f"{path}: file not found")
            continue
        if not Path(path).is_file():
            raise NeuroTrainError(f"{path}: file not found")
        error = inspect_image(str(path))["error"]
        if error:
            raise NeuroTrainError(f"{path}: cannot read this image ({error})")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Predictor:
    """Predict images (PIL images, arrays or file paths) with a trained model and its processor."""

    def __init__(self, model: Any, processor: Any, task: Any, batch_size: int = 64) -> None:
        self.model, self.processor, self.task = model.eval(), processor, task
        self.inference = task.inference(model.config)
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> Predictor:
        """From a model folder, or a run folder (uses its ``model/``)."""
        from transformers import AutoImageProcessor

        folder = model_folder(path)
        task = get_task(task_of(folder)).load()
        model = task.load_model(folder)
        processor = AutoImageProcessor.from_pretrained(str(folder))
        return cls(model, processor, task, **kwargs)

    @torch.no_grad()
    def predict(self, images: Sequence[Any]) -> list[dict[str, Any]]:
        """Predict a list of inputs in batches (images of different sizes in separate forward passes)."""
        device = next(self.model.parameters()).device
        out: list[dict[str, Any]] = [{} for _ in images]
        groups: dict[tuple, list[int]] = {}  # images of one size go through the processor and model together
        for i, image in enumerate(images):
            groups.setdefault(upright_size(image), []).append(i)
        for members in groups.values():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                inputs = self.processor([images[i] for i in chunk], return_tensors="pt")
                inputs = {k: v.to(device) for k, v in inputs.items()}
                for i, record in zip(
                    chunk, self.task.predictions(self.inference(self.model, inputs), self.model)
                ):
                    out[i] = record
        return out

    @torch.no_grad()
    def predict_volume(self, path: str | Path | Sequence[str]) -> dict[str, Any]:
        """One volume (NIfTI file, channel files or case folder): the record's ``mask`` is on the input
        file's own voxel grid, with its ``affine`` and ``header`` for writing it back as NIfTI."""
        device = next(self.model.parameters()).device
        item = self.processor.load(path)
        inputs = {k: v[None].to(device) for k, v in item.items() if torch.is_tensor(v)}
        record = self.task.predictions(self.inference(self.model, inputs), self.model)[0]
        record.update(
            affine=item["dst_affine"].numpy(),
            header=item["header"],
            spacing=item["spacing"].tolist(),
            image=self.processor.files(path),
        )
        return record

    def predict_files(self, paths: Sequence[str | Path]) -> list[dict[str, Any]]:
        """Predict image files; an image the model cannot take is named in a one-line error."""
        from .data.volume_processor import NeuroVolumeProcessor

        if isinstance(self.processor, NeuroVolumeProcessor):
            return [self.predict_volume(p) for p in paths]
        try:
            return self.predict([str(p) for p in paths])
        except (RuntimeError, ValueError) as exc:
            for path in paths:
                try:
                    self.predict([str(path)])
                except (RuntimeError, ValueError) as single:
                    raise NeuroTrainError(
                        f"{path}: the model cannot take this image ({_first_line(single)})"
                    ) from None
            raise NeuroTrainError(
                f"the model cannot take these images together ({_first_line(exc)})"
            ) from None

    def __call__(self, image: Any) -> dict[str, Any]:
        """Predict one input."""
        return self.predict([image])[0]

"""Predictor: run a trained model folder on new inputs, the way the Tester evaluated it.

``Predictor.from_pretrained(path)`` takes a run folder (its ``model/``), a model folder or a Hub repo id.
Everything task-specific is the task's (``tasks/base.py``): the model and processor classes, the saved
settings, how an input is read and batched, the inference (a forward, or a loop: a sampler, generation)
and how outputs become records. No input kind is assumed here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import NeuroTrainError, first_line
from .tasks import TaskSpec, each_task, get_task
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
    """The task that trained a model folder (``neurotrain_task`` in config.json; else the task claiming it)."""
    return task_of_config(json.loads((folder / "config.json").read_text(encoding="utf-8")), folder)


def task_of_config(config: dict[str, Any], where: Any = "model") -> str:
    """The task of a model config: ``neurotrain_task``, else the one task whose ``claims`` accepts it."""
    if config.get(TASK_KEY):
        return config[TASK_KEY]
    claimed = [name for name, task in each_task(TaskSpec.load).items() if type(task).claims(config)]
    if len(claimed) == 1:
        return claimed[0]
    architectures = config.get("architectures") or []
    raise NeuroTrainError(
        f"{where}: cannot tell the task of this model (architectures {architectures}; "
        f"{'claimed by ' + ', '.join(claimed) if claimed else 'no task claims it'})"
    )


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if torch.is_tensor(value) else value


class Predictor:
    """Predict inputs (what the task reads: images, volumes, ...) with a trained model and its processor."""

    def __init__(self, model: Any, processor: Any, task: Any, batch_size: int = 64) -> None:
        self.model, self.processor, self.task = model.eval(), processor, task
        self.inference = task.inference(model.config)
        self.settings = task.settings(model.config)
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> Predictor:
        """From a model folder, a run folder (its ``model/``), a Hub repo id or an exported ``.onnx`` graph
        (run through onnxruntime with the task's pre- and post-processing)."""
        if str(path).lower().endswith(".onnx"):
            from .tools.onnx_model import load_onnx_model

            model = load_onnx_model(path)
            task = get_task(task_of(Path(path).parent)).load()
            return cls(model, task.load_processor(Path(path).parent), task, **kwargs)
        folder = model_folder(path)
        task = get_task(task_of(folder)).load()
        return cls(task.load_model(folder), task.load_processor(folder), task, **kwargs)

    @torch.no_grad()
    def predict(self, items: Sequence[Any], settings: Any = None) -> list[dict[str, Any]]:
        """Predict a list of inputs in batches (inputs the task keys apart go through the model apart).
        ``settings`` replaces the saved ones for this call in ``preprocess`` and ``predictions`` (a demo's
        threshold and post-processing, zero-shot labels); the inference itself (windows, flips) is the
        saved one."""
        settings = settings if settings is not None else self.settings
        device = next(self.model.parameters()).device
        out: list[dict[str, Any]] = [{} for _ in items]
        groups: dict[Any, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(self.task.batch_key(item), []).append(i)
        for members in groups.values():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                inputs = self.task.preprocess(self.processor, [items[i] for i in chunk], settings)
                inputs = {k: _to(v, device) for k, v in inputs.items()}
                outputs = self.inference(self.model, inputs)
                for i, record in zip(chunk, self.task.predictions(outputs, self.model, inputs, settings)):
                    out[i] = record
        return out

    def predict_files(
        self, paths: Sequence[str | Path], options: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Predict ``neurotrain predict`` arguments (files, folders) with the options that go with each
        (``--question``); a bad one is one line naming it."""
        items = [self.task.input_options(self.task.read_input(p), options or {}) for p in paths]
        try:
            return self.predict(items)
        except NeuroTrainError:
            raise  # already one line naming the input
        except (RuntimeError, ValueError) as exc:
            for path, item in zip(paths, items):
                try:
                    self.predict([item])
                except NeuroTrainError:
                    raise
                except (RuntimeError, ValueError) as single:
                    raise NeuroTrainError(
                        f"{path}: the model cannot take this input ({first_line(single)})"
                    ) from None
            raise NeuroTrainError(
                f"the model cannot take these inputs together ({first_line(exc)})"
            ) from None

    def __call__(self, item: Any) -> dict[str, Any]:
        """Predict one input."""
        return self.predict([item])[0]

"""The task interface: what a task supplies to the generic runner, Tester and Predictor.

A task folder ``tasks/<name>/`` holds its config (a ``TrainingArguments`` subclass), its trainer (a
``NeuroTrainer`` subclass), its data preparation and a ``Task`` subclass tying them together. The
runner (``neurotrain_hf/runner.py``) calls, in order: ``prepare_data`` -> ``build_model`` ->
``build_trainer`` -> train -> save (model + ``data.processor``) -> Tester (the trainer's ``predict``)
-> ``write_plots``. The Predictor calls ``load_model``, ``inference`` and ``predictions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import datasets

from ..trainer.inference import Inference

TASK_KEY = "neurotrain_task"  # written into a saved config.json: which task's Predictor serves the folder


@dataclass
class TaskData:
    """Prepared data: splits with transforms attached, what the model needs to know, the processor."""

    splits: datasets.DatasetDict
    info: Any
    processor: Any = None
    report: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)  # extra JSON files for the run folder (name -> value)


class Task:
    """Base class of a task's hooks; subclasses set the class attributes and override the hooks."""

    name: ClassVar[str] = ""
    auto_model: ClassVar[str] = "AutoModelForImageClassification"
    hub_task: ClassVar[str] = "image-classification"  # the Hub's pipeline tag / model-index task type
    description: ClassVar[str] = "image model"
    medical: ClassVar[bool] = False  # cards then say: research use, not for clinical use

    # --- training ---------------------------------------------------------------------------------
    def prepare_data(self, config) -> TaskData:
        """Load, check and split the configured dataset; attach the train/eval transforms."""
        raise NotImplementedError

    def build_model(self, config, data: TaskData) -> Any:
        """A fresh (or pretrained) ``PreTrainedModel`` sized for the data (``data.info``: num_labels,
        channels, label_names), through the model registry and the task's Auto class."""
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

    def build_trainer(self, config, model: Any, data: TaskData, callbacks: list | None = None) -> Any:
        """The task's ``NeuroTrainer`` subclass on the prepared splits."""
        raise NotImplementedError

    def inference(self, model_config: Any = None) -> Inference:
        """How outputs are produced and turned into metric inputs (shared by eval, Tester, Predictor)."""
        return Inference()

    def finalize_model(self, model: Any, valid_artifacts: dict[str, Any]) -> None:
        """Before saving: record what validation chose (e.g. a tuned threshold) in the model config."""

    # --- saved models and prediction ------------------------------------------------------------------
    def load_model(self, folder: str | Path) -> Any:
        """A trained model folder through the task's transformers Auto class (no remote code)."""
        import transformers

        return getattr(transformers, self.auto_model).from_pretrained(str(folder))

    def predictions(self, outputs: Any, model: Any) -> list[dict[str, Any]]:
        """Model outputs of a batch -> one record per input (the Predictor's return value)."""
        raise NotImplementedError

    def probe_inputs(self, model: Any) -> dict[str, Any]:
        """A fixed small batch the model takes (adapter merge checks outputs agree on it)."""
        import torch

        config = model.config
        size = getattr(config, "image_size", None) or 32
        channels = getattr(config, "num_channels", None) or getattr(config, "in_channels", None) or 3
        generator = torch.Generator().manual_seed(0)
        return {"pixel_values": torch.randn(2, channels, size, size, generator=generator)}

    def probe_outputs(self, model: Any, inputs: dict[str, Any]) -> list[Any]:
        """The output tensors compared on the probe batch."""
        from ..models.registry import logits_of

        return [logits_of(model(**inputs)).float()]

    # --- sharing ---------------------------------------------------------------------------------------
    def metric_protocol(self, key: str, config: dict[str, Any]) -> str:
        """How a reported metric was measured, for model cards (tasks name their protocols)."""
        return key

    def load_snippet(self, repo_id: str) -> str:
        """Python that loads the pushed model (our architectures register with the Auto classes)."""
        return (
            "import neurotrain_hf  # registers neurotrain's model classes with the Auto classes (no remote code)\n"
            f"from transformers import {self.auto_model}, AutoImageProcessor\n\n"
            f'model = {self.auto_model}.from_pretrained("{repo_id}")\n'
            f'processor = AutoImageProcessor.from_pretrained("{repo_id}")\n'
            f'# or: neurotrain_hf.Predictor.from_pretrained("{repo_id}")(image)'
        )

    def limitations(self) -> str:
        text = (
            "Trained and evaluated on the dataset named above only; check it on data like yours before use. "
            "Results are from one run with one seed."
        )
        if self.medical:
            text += (
                " **Research use only: not a medical device and not for clinical use** (diagnosis, screening or "
                "treatment decisions). Performance on other devices, sites and populations is unknown."
            )
        return text

    def save_prediction(
        self, record: dict[str, Any], source: str | Path, out_dir: str | Path | None
    ) -> list[Path]:
        """Write a record's outputs (masks, volumes) for ``neurotrain predict --out``; returns the paths."""
        return []

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        """What ``neurotrain predict`` prints for one record."""
        return record

    def write_plots(self, run_dir: Path, valid: dict[str, Any], test: dict[str, Any], model: Any) -> None:
        """Task plots from the kept evaluation artifacts of validation (best model) and test."""

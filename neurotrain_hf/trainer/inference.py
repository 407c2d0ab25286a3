"""``Inference``: how a task's model turns a batch into outputs, and outputs into metric inputs.

One object per task, shared by evaluation (``NeuroTrainer.prediction_step``), the Tester (which runs
the trainer's ``predict``) and the Predictor, so all three produce outputs the same way. Tasks
subclass it: a 3D task runs MONAI's sliding-window inferer in ``__call__``; a dense task turns logits
into label maps in ``metric_inputs`` before anything is gathered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..models.registry import logits_of


class Inference:
    """Forward with keyword inputs; metric inputs are (logits, labels). ``__call__`` may be a loop (a
    sliding window, a sampler with N steps, autoregressive generation), not only a forward."""

    def __init__(self, input_names: Sequence[str] = ("pixel_values",)) -> None:
        self.input_names = tuple(input_names)
        self.label_names: tuple[str, ...] = ()  # set by the trainer when the model computes its own loss

    def model_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments the model is called with (its labels only when it computes its own loss,
        so evaluation reports the training loss)."""
        return {k: inputs[k] for k in (*self.input_names, *self.label_names) if k in inputs}

    def __call__(self, model: torch.nn.Module, inputs: dict[str, Any]) -> Any:
        return model(**self.model_inputs(inputs))

    def metric_inputs(self, outputs: Any, inputs: dict[str, Any]) -> tuple[Any, Any]:
        """(predictions, references) for the streaming metrics, cut to real samples by the caller."""
        return logits_of(outputs), inputs.get("labels")

"""neurotrain_hf: NeuroTrain on the Hugging Face stack.

The original NeuroTrain entry points are importable from here and load on first use. Importing the
package registers every task's models and processors with the transformers Auto classes (so it imports
transformers' model classes), which lets ``AutoModelFor*`` and ``transformers.pipeline`` load our
model folders.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

# torchao 0.18 registers Enum pytree constants that torch 2.14 deprecates, and transformers imports torchao
# whenever it is installed: two warnings in every process would break our one-line errors.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

_EXPORTS = {
    "get_config": "neurotrain_hf.config",
    "get_config_value": "neurotrain_hf.config",
    "load_config": "neurotrain_hf.config",
    "ExperimentConfig": "neurotrain_hf.config",
    "get_model": "neurotrain_hf.models",
    "list_models": "neurotrain_hf.models",
    "register_model": "neurotrain_hf.models",
    "get_dataset": "neurotrain_hf.data",
    "get_train_dataset": "neurotrain_hf.data",
    "get_valid_dataset": "neurotrain_hf.data",
    "get_test_dataset": "neurotrain_hf.data",
    "get_train_valid_test_dataloader": "neurotrain_hf.data",
    "random_sample": "neurotrain_hf.data",
    "list_datasets": "neurotrain_hf.data",
    "register_dataset": "neurotrain_hf.data",
    "HybridDataset": "neurotrain_hf.data.hybrid",
    "register_loss": "neurotrain_hf.losses",
    "list_losses": "neurotrain_hf.losses",
    "build_loss": "neurotrain_hf.losses",
    "list_metrics": "neurotrain_hf.metrics",
    "register_family": "neurotrain_hf.metrics",
    "NeuroTrainer": "neurotrain_hf.trainer",
    "NeuroTrainingArguments": "neurotrain_hf.trainer",
    "Task": "neurotrain_hf.tasks",
    "TaskSpec": "neurotrain_hf.tasks",
    "register_task": "neurotrain_hf.tasks",
    "list_tasks": "neurotrain_hf.tasks",
    "NeuroImageProcessor": "neurotrain_hf.data.processor",
    "Tester": "neurotrain_hf.tester",
    "Predictor": "neurotrain_hf.predictor",
    "run": "neurotrain_hf.runner",
}
# NeuroTrain's role names: ``Trainer`` is the task trainer base.
_ALIASES = {"Trainer": ("neurotrain_hf.trainer", "NeuroTrainer")}

__all__ = sorted([*_EXPORTS, *_ALIASES])

from .tasks import register_all_models as _register_all_models  # noqa: E402

_register_all_models()  # every task's models with the registry and the transformers Auto classes


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _ALIASES:
        module, attr = _ALIASES[name]
        return getattr(importlib.import_module(module), attr)
    if name[:1].isupper():  # a task's public class (its spec's ``exports``), e.g. a pipeline class
        from .tasks import task_export

        return task_export(name)
    raise AttributeError(f"module 'neurotrain_hf' has no attribute {name!r}")

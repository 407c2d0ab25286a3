"""Task registry: each task is a (TrainingArguments subclass, Trainer subclass, runner) triple.

Entries are import strings so that reading a config does not import every task's dependencies.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ..registry import Registry


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's pieces live, as ``module:attribute`` strings."""

    name: str
    config: str
    trainer: str
    runner: str
    description: str = ""

    @staticmethod
    def _load(target: str) -> Any:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def config_class(self) -> type:
        return self._load(self.config)

    def trainer_class(self) -> type:
        return self._load(self.trainer)

    def run_function(self) -> Any:
        return self._load(self.runner)


TASKS: Registry[TaskSpec] = Registry("task")


def register_task(spec: TaskSpec) -> TaskSpec:
    return TASKS.register(spec.name)(spec)


def get_task(name: str) -> TaskSpec:
    return TASKS.get(name)


def list_tasks(pattern: str = "*") -> list[str]:
    return TASKS.list(pattern)


register_task(
    TaskSpec(
        name="classification",
        config="neurotrain_hf.tasks.classification_config:ClassificationConfig",
        trainer="neurotrain_hf.tasks.classification_trainer:ClassificationTrainer",
        runner="neurotrain_hf.tasks.classification_runner:run_classification",
        description="Image classification (digits, MNIST, CIFAR, image folders, ImageNet-style folders).",
    )
)

"""Task registry: each task is a folder ``tasks/<name>/`` whose ``__init__`` registers a ``TaskSpec``.

Specs hold import strings, so reading a config does not import every task's dependencies; a task's
``Task`` class (``tasks/base.py``) is imported when the task runs. Adding a task adds a folder and
touches no other task: the folders are discovered here.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any

from ..registry import Registry


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's pieces live, as ``module:attribute`` strings."""

    name: str
    config: str
    task: str
    sources: str = ""
    description: str = ""

    @staticmethod
    def _load(target: str) -> Any:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def config_class(self) -> type:
        """The task's ``TrainingArguments`` subclass (the ``[training]`` section)."""
        return self._load(self.config)

    def load(self) -> Any:
        """An instance of the task's ``Task`` class."""
        return self._load(self.task)()

    def load_sources(self) -> None:
        """Import the module that registers the task's datasets."""
        if self.sources:
            importlib.import_module(self.sources)


TASKS: Registry[TaskSpec] = Registry("task")
_discovered = False


def register_task(spec: TaskSpec) -> TaskSpec:
    return TASKS.register(spec.name)(spec)


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            importlib.import_module(f"{__name__}.{info.name}")


def get_task(name: str) -> TaskSpec:
    _discover()
    return TASKS.get(name)


def list_tasks(pattern: str = "*") -> list[str]:
    _discover()
    return TASKS.list(pattern)


def load_all_sources() -> None:
    """Register every task's datasets (for ``neurotrain list datasets``)."""
    for name in list_tasks():
        TASKS.get(name).load_sources()

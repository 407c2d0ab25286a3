"""Task discovery: every task, built in or from another package, is a ``TaskSpec`` found through the
entry-point group ``neurotrain_hf.tasks`` (or registered in process with ``register_task``).

A spec holds import strings, so reading a config imports only the chosen task's configuration classes
and the task's ``Task`` class (``tasks/base.py``) is imported when the task runs. Built-in tasks declare
their entry points in this package's ``pyproject.toml``, exactly as an external package does in its own:

    [project.entry-points."neurotrain_hf.tasks"]
    denoising = "my_package.task:SPEC"

The public API for writing a task is importable from here (see ``docs/writing-a-task.md``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import RegistryError, first_line
from ..registry import Registry

if TYPE_CHECKING:  # the public names (``__getattr__``) load on first use: they import torch and transformers
    from .base import Task

logger = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "neurotrain_hf.tasks"
SHARED_DATASET = "neurotrain_hf.config.sections:DatasetConfig"
SHARED_AUGMENTATION = "neurotrain_hf.config.sections:AugmentationConfig"


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's pieces live, as ``module:attribute`` strings (imported when needed)."""

    name: str
    task: str  # the ``Task`` subclass: the hooks the runner, Tester, Predictor, CLI, Hub and demos call
    training: str  # the ``[training]`` section: a ``NeuroTrainingArguments`` subclass
    dataset: str = SHARED_DATASET  # the ``[dataset]`` section: a ``DatasetConfig`` subclass
    augmentation: str = SHARED_AUGMENTATION  # the ``[augmentation]`` section
    sources: str = ""  # module registering the task's datasets
    models: str = ""  # module registering the task's models (model registry, transformers Auto classes)
    default_model: str = ""  # ``[model] name`` when a config leaves it unset
    description: str = ""
    exports: tuple[str, ...] = ()  # public classes as ``module:Name``, importable as ``neurotrain_hf.Name``

    @staticmethod
    def _load(target: str) -> Any:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def section_class(self, section: str) -> type:
        """The dataclass of ``[training]``, ``[dataset]`` or ``[augmentation]`` for this task."""
        return self._load(getattr(self, section))

    def config_class(self) -> type:
        """The task's ``TrainingArguments`` subclass (the ``[training]`` section)."""
        return self.section_class("training")

    def load(self) -> Task:
        """An instance of the task's ``Task`` class."""
        return self._load(self.task)()

    def load_sources(self) -> None:
        """Import the module that registers the task's datasets."""
        if self.sources:
            importlib.import_module(self.sources)

    def register_models(self) -> None:
        """Import the module that registers the task's models and processors (registry, Auto classes)."""
        if self.models:
            importlib.import_module(self.models)


TASKS: Registry[TaskSpec] = Registry("task")
_broken: dict[
    str, str
] = {}  # entry points that failed to load: name -> why (said when the task is asked for)
_discovered = False
T = TypeVar("T")


def register_task(spec: TaskSpec) -> TaskSpec:
    """Register a spec in this process (entry points are the way for installed packages)."""
    return TASKS.register(spec.name)(spec)


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = point.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the other tasks
            _skip(point.name, f"entry point {point.value!r} failed to load ({first_line(exc)})")
            continue
        if not isinstance(spec, TaskSpec) or spec.name != point.name:
            _skip(point.name, f"entry point {point.value!r} is not a TaskSpec named {point.name!r}")
        elif spec.name in TASKS and TASKS.get(spec.name) != spec:
            logger.warning("task %r: two packages declare it; %r is ignored", point.name, point.value)
        elif spec.name not in TASKS:
            register_task(spec)


def _skip(name: str, why: str) -> None:
    """Leave a task out (said in a warning now, and when the task is asked for)."""
    TASKS.unregister(name)
    _broken[name] = why
    logger.warning("task %r is left out: %s", name, why)


def each_task(load: Callable[[TaskSpec], T]) -> dict[str, T]:
    """``load(spec)`` for every task; a task whose modules fail to import is left out, not fatal (one
    broken plugin must not break the others)."""
    out: dict[str, T] = {}
    for name in list_tasks():
        try:
            out[name] = load(TASKS.get(name))
        except Exception as exc:  # noqa: BLE001
            _skip(name, f"its modules failed to import ({first_line(exc)})")
    return out


def get_task(name: str) -> TaskSpec:
    """The spec of a task by name; an unknown name is one line listing the known tasks."""
    _discover()
    if name in _broken and name not in TASKS:
        raise RegistryError(f"task {name!r}: {_broken[name]}")
    if not TASKS.list():
        raise RegistryError(
            f"no tasks are installed (entry-point group {ENTRY_POINT_GROUP!r} is empty): install the package "
            "with `pip install -e .` (`make install`)"
        )
    if not name:
        raise RegistryError(f"no task given; known: {', '.join(list_tasks())}")
    return TASKS.get(name)


def task_export(name: str) -> Any:
    """A task's public class ``name`` (its spec's ``exports``), for ``neurotrain_hf.<name>``."""
    for task in list_tasks():
        for target in TASKS.get(task).exports:
            if target.rpartition(":")[2] == name:
                return TaskSpec._load(target)
    raise AttributeError(f"module 'neurotrain_hf' has no attribute {name!r}")


def list_tasks(pattern: str = "*") -> list[str]:
    _discover()
    return TASKS.list(pattern)


def load_all_sources() -> None:
    """Register every task's datasets (for ``neurotrain list datasets``)."""
    each_task(TaskSpec.load_sources)


def register_all_models() -> None:
    """Every task's model registrations (``import neurotrain_hf`` runs this, so the transformers Auto
    classes and pipelines load our model folders)."""
    each_task(TaskSpec.register_models)


_PUBLIC = {
    "Task": "neurotrain_hf.tasks.base",
    "TaskData": "neurotrain_hf.tasks.base",
    "SampleBatch": "neurotrain_hf.tasks.base",
    "TestOutputs": "neurotrain_hf.tasks.base",
    "NeuroTrainer": "neurotrain_hf.trainer.neuro_trainer",
    "NeuroTrainingArguments": "neurotrain_hf.trainer.neuro_config",
    "Inference": "neurotrain_hf.trainer.inference",
    "register_dataset": "neurotrain_hf.data.registry",
    "DatasetSource": "neurotrain_hf.data.registry",
    "register_model": "neurotrain_hf.models.registry",
    "ModelRequest": "neurotrain_hf.models.registry",
    "register_loss": "neurotrain_hf.losses",
    "register_family": "neurotrain_hf.metrics.registry",
    "StreamingMetrics": "neurotrain_hf.metrics.registry",
    "DatasetConfig": "neurotrain_hf.config.sections",
    "AugmentationConfig": "neurotrain_hf.config.sections",
    "ImageTask": "neurotrain_hf.tasks.image_task",
    "loss_text": "neurotrain_hf.tasks.base",
    "get_model": "neurotrain_hf.models.registry",
    "register_auto_model": "neurotrain_hf.models.auto",
    "register_processor": "neurotrain_hf.models.auto",
    "add_missing_splits": "neurotrain_hf.data.splits",
    "ConfigError": "neurotrain_hf.errors",
    "DataError": "neurotrain_hf.errors",
}
__all__ = ["TaskSpec", "each_task", "get_task", "list_tasks", "register_task", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

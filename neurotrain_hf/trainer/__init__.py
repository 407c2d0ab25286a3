"""NeuroTrainer: the Trainer every task subclasses, its arguments, callbacks and run folder."""

from .neuro_config import NeuroTrainingArguments
from .neuro_trainer import NeuroTrainer

__all__ = ["NeuroTrainer", "NeuroTrainingArguments"]

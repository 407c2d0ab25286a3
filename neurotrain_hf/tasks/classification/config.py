"""The classification task's sections: ``[training]`` (``ClassificationConfig``), ``[dataset]`` and
``[augmentation]``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config.fields import ChannelFields, ColumnFields, HybridFields, ImageOpsFields, NormalizeFields
from ...config.sections import AugmentationConfig, DatasetConfig
from ...losses import LossFields
from ...trainer.neuro_config import NeuroTrainingArguments
from . import metrics as _metrics  # noqa: F401  (registers the classification metric families)

DEFAULT_METRICS = ["accuracy", "precision", "recall", "f1", "auc", "top3", "top5"]


@dataclass
class ClassificationDataset(HybridFields, ChannelFields, ColumnFields, DatasetConfig):
    """``[dataset]`` of classification: a registered dataset of images with class labels."""

    name: str = field(
        default="digits", metadata={"help": "Registered dataset name; `neurotrain list datasets` shows them."}
    )


@dataclass
class ClassificationAugmentation(NormalizeFields, ImageOpsFields, AugmentationConfig):
    """``[augmentation]`` of classification: the processor's resize and normalisation, and random v2 ops."""


@dataclass
class ClassificationConfig(LossFields, NeuroTrainingArguments):
    """Image classification: cross-entropy by default, accuracy/P/R/F1 (macro)/AUC/top-k metrics."""

    metric_families = ("classification", "threshold")

    metrics: list[str] | None = field(
        default_factory=lambda: list(DEFAULT_METRICS),
        metadata={
            "help": "Evaluation metrics: accuracy, precision, recall, f1, auc, top1, top3, top5; binary tasks "
            "also best_f1, best_f1_threshold, best_accuracy, best_accuracy_threshold (a threshold sweep)."
        },
    )
    average: str = field(
        default="macro",
        metadata={
            "help": "Averaging of precision, recall, F1 and AUC over classes.",
            "choices": ["macro", "micro", "weighted"],
        },
    )
    metric_for_best_model: str | None = field(
        default="accuracy",
        metadata={"help": "Metric that picks the best checkpoint and drives early stopping."},
    )

"""``ClassificationConfig``: the ``[training]`` section of image-classification experiments."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...trainer.neuro_config import NeuroTrainingArguments

DEFAULT_METRICS = ["accuracy", "precision", "recall", "f1", "auc", "top3", "top5"]


@dataclass
class ClassificationConfig(NeuroTrainingArguments):
    """Image classification: cross-entropy by default, accuracy/P/R/F1 (macro)/AUC/top-k metrics."""

    metrics: list[str] | None = field(
        default_factory=lambda: list(DEFAULT_METRICS),
        metadata={"help": "Evaluation metrics: accuracy, precision, recall, f1, auc, top1, top3, top5."},
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

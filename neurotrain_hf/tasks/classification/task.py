"""``ClassificationTask``: the classification hooks the generic runner, Tester and Predictor call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...metrics.classification import softmax
from ...models.registry import logits_of
from ...trainer.run_folder import plot_confusion
from ..base import Task, TaskData
from .data import prepare
from .trainer import ClassificationTrainer


class ClassificationTask(Task):
    """Images -> one label; models load with ``AutoModelForImageClassification``."""

    name = "classification"
    auto_model = "AutoModelForImageClassification"
    description = "image classification"

    def metric_protocol(self, key: str, config: dict[str, Any]) -> str:
        average = config.get("training", {}).get("average", "macro")
        if key in ("precision", "recall", "f1", "auc"):
            return f"{key}, {average}-averaged over classes"
        if key == "accuracy":
            return "top-1 accuracy"
        return f"top-{key[3:]} accuracy" if key.startswith("top") else key

    def prepare_data(self, config) -> TaskData:
        return prepare(config)

    def build_trainer(self, config, model, data: TaskData, callbacks: list | None = None):
        return ClassificationTrainer(
            model,
            config.training,
            train_dataset=data.splits["train"],
            eval_dataset=data.splits.get("valid"),
            num_labels=data.info.num_labels,
            label_names=data.info.label_names,
            inference=self.inference(),
            callbacks=callbacks,
        )

    def predictions(self, outputs: Any, model: Any) -> list[dict[str, Any]]:
        """Softmax scores, the arg-max label and its name (from the model config's ``id2label``)."""
        probs = softmax(logits_of(outputs).float().cpu().numpy())
        id2label = getattr(model.config, "id2label", None) or {}
        return [
            {
                "label": int(p.argmax()),
                "label_name": str(id2label.get(int(p.argmax()), int(p.argmax()))),
                "score": float(p.max()),
                "scores": p.tolist(),
            }
            for p in probs
        ]

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "label": record["label"],
            "label_name": record["label_name"],
            "score": round(record["score"], 6),
        }

    def write_plots(self, run_dir: Path, valid: dict[str, Any], test: dict[str, Any], model: Any) -> None:
        names = [str(model.config.id2label.get(i, i)) for i in range(model.config.num_labels)]
        if "confusion" in valid:
            plot_confusion(run_dir, valid["confusion"], names, name="valid_confusion_matrix.png")
        if "confusion" in test:
            plot_confusion(run_dir, test["confusion"], names)

"""``ClassificationTask``: the classification hooks the generic runner, Tester and Predictor call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import NeuroTrainError
from ...metrics.classification import softmax
from ...models.registry import logits_of
from ...trainer.run_folder import plot_confusion
from ..base import SampleBatch, TaskData, TestOutputs, loss_text
from ..image_task import ImageTask
from .data import prepare
from .trainer import ClassificationTrainer


class ClassificationTask(ImageTask):
    """Images -> one label; models load with ``AutoModelForImageClassification``."""

    name = "classification"
    auto_model = "AutoModelForImageClassification"
    hub_task = "image-classification"
    description = "image classification"

    @classmethod
    def claims(cls, model_config: dict[str, Any]) -> bool:
        return any(a.endswith("ForImageClassification") for a in model_config.get("architectures") or [])

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
            inference=self.inference(),
            callbacks=callbacks,
        )

    def predictions(self, outputs: Any, model: Any, inputs=None, settings=None) -> list[dict[str, Any]]:
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

    def explain_score(self, outputs: Any, target: int | None = None, settings: Any = None) -> tuple[Any, int]:
        """Grad-CAM's score: the logit of ``target``, else of the predicted class."""
        logits = logits_of(outputs)[0]
        target = int(logits.argmax()) if target is None else int(target)
        if not 0 <= target < len(logits):
            raise NeuroTrainError(
                f"--target {target}: the model has {len(logits)} classes (0..{len(logits) - 1})"
            )
        return logits[target], target

    def sample_records(self, batch: SampleBatch, out: TestOutputs) -> list[dict[str, Any]]:
        """Per image: reference and predicted label (with names), confidence, correct, loss."""
        probs = softmax(batch.predictions.float().cpu().numpy())
        preds = probs.argmax(axis=1)
        names = out.info.label_names
        rows = []
        for k, index in enumerate(batch.indices):
            y, p = int(batch.references[k]), int(preds[k])
            rows.append(
                {
                    "index": index,
                    "label": y,
                    "label_name": names[y],
                    "prediction": p,
                    "prediction_name": names[p],
                    "confidence": f"{probs[k, p]:.6f}",
                    "correct": int(y == p),
                    "loss": loss_text(batch.losses, k),
                }
            )
        return rows

    def write_plots(self, run_dir: Path, valid: dict[str, Any], test: dict[str, Any], model: Any) -> None:
        names = [str(model.config.id2label.get(i, i)) for i in range(model.config.num_labels)]
        if "confusion" in valid:
            plot_confusion(run_dir, valid["confusion"], names, name="valid_confusion_matrix.png")
        if "confusion" in test:
            plot_confusion(run_dir, test["confusion"], names)

    def build_demo(self, folder: Path, model_name: str, examples: Any = None, **options: Any) -> Any:
        from .demo import build_demo

        return build_demo(folder, model_name, examples, **options)

"""Tester: evaluate a trained model on a split through the trainer's own ``predict``.

Same loss definition, mixed precision and process layout as evaluation during training; the metrics
are streamed per rank and reduced once. The split, the output folder and the split's rows are passed
explicitly (``TestOutputs``) to the task's output hooks, which write ``<split>_per_sample.csv`` and
whatever else the task keeps (pictures, result files); the Tester writes ``<split>_metrics.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .config.experiment import ExperimentConfig
from .errors import NeuroTrainError
from .tasks import get_task
from .trainer.checkpointing import last_good_checkpoint, write_json_atomic
from .trainer.evaluation import TestOutputs

_TIMING = ("_runtime", "_per_second", "_model_preparation_time")


def resolve_checkpoint(run_dir: str | Path, which: str) -> Path:
    """``best`` (the final model folder, which holds the best checkpoint), ``last``, or a folder path."""
    run_dir = Path(run_dir)
    if which == "best":
        if (run_dir / "model").is_dir():
            return run_dir / "model"
        which = "last"
    if which == "last":
        last = last_good_checkpoint(run_dir)
        if last is None:
            raise NeuroTrainError(f"{run_dir}: no model folder and no complete checkpoint found")
        return last
    path = Path(which)
    if not path.is_dir():
        raise NeuroTrainError(f"[testing] checkpoint {which!r}: folder not found")
    return path


class Tester:
    """Evaluate a model on one split of the configured dataset and write the results to the run folder.

    Given the training run's ``trainer`` and ``data``, it reuses both; otherwise it prepares the data
    and loads the model named by ``[testing] checkpoint`` from the run folder.
    """

    def __init__(
        self, config: ExperimentConfig, trainer: Any = None, data: Any = None, task: Any = None
    ) -> None:
        self.config = config
        self.trainer = trainer
        self.data = data
        self.task = task or get_task(config.basic.task).load()  # the run's own task object when given
        self.artifacts: dict[str, Any] = {}

    def _build(self) -> None:
        if self.data is None:
            self.data = self.task.prepare_data(self.config)
        if self.trainer is None:
            folder = resolve_checkpoint(self.config.run_dir, self.config.testing.checkpoint)
            model = self.task.load_model(folder)
            self.trainer = self.task.build_trainer(self.config, model, self.data)

    def run(self, split: str | None = None, out_dir: str | Path | None = None) -> dict[str, Any]:
        split = split or self.config.testing.split
        self._build()
        if split not in self.data.splits:
            raise NeuroTrainError(f"[testing] split {split!r}: the dataset has {', '.join(self.data.splits)}")
        if len(self.data.splits[split]) == 0:
            raise NeuroTrainError(f"[testing] split {split!r} is empty")
        out_dir = Path(out_dir or self.config.run_dir)
        dataset = self.data.splits[split]
        out = TestOutputs(
            split,
            out_dir,
            dataset.with_format(None),
            self.config,
            self.data.info,
            per_sample=self.config.testing.per_sample,
        )
        with self.trainer.writing_samples(self.task, out):
            output = self.trainer.predict(dataset, metric_key_prefix=split)
        prefix = f"{split}_"
        result: dict[str, Any] = {"split": split}
        result.update(
            {
                k[len(prefix) :]: v
                for k, v in output.metrics.items()
                if k.startswith(prefix) and not k.endswith(_TIMING)
            }
        )
        self.artifacts = self.trainer.last_eval
        if self.trainer.is_world_process_zero():
            out_dir.mkdir(parents=True, exist_ok=True)
            clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}
            write_json_atomic(out_dir / f"{split}_metrics.json", json.loads(json.dumps(clean)))
        return result

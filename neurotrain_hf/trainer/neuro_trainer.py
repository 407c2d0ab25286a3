"""NeuroTrainer: the ``transformers.Trainer`` every neurotrain task subclasses.

It adds losses from the registry (``compute_loss`` honours ``num_items_in_batch``), streaming metrics
chosen by name, early stopping, crash-safe checkpoints, a stop on non-finite loss, a run folder with
history, plots and report, and batched reads from ``datasets``. Subclasses override ``model_forward``
(what the model is called with) and the metric/report hooks.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import EarlyStoppingCallback, Trainer

from ..errors import TrainingHaltedError
from ..losses import LossFn
from ..metrics.registry import StreamingMetrics
from ..models.registry import logits_of
from .callbacks import DataEpochCallback, MonitorCallback
from .checkpointing import last_good_checkpoint, mark_complete, remove_incomplete
from .neuro_config import NeuroTrainingArguments
from .run_folder import HistoryRecorder

logger = logging.getLogger(__name__)


def check_distributed_launch(num_processes: int) -> None:
    """Refuse the silent "N independent trainers" case: a launcher said WORLD_SIZE > 1, Accelerate sees 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and num_processes != world:
        raise TrainingHaltedError(
            f"launched with WORLD_SIZE={world} but training runs on {num_processes} process(es): the ranks would "
            "train independently. On CPU launch with `accelerate launch --multi_gpu --num_processes N` and "
            "use_cpu (set automatically), see docs/distributed.md"
        )


class NeuroTrainer(Trainer):
    """Trainer with registry losses, streaming metrics, run-folder recording and crash-safe checkpoints."""

    def __init__(
        self,
        model: torch.nn.Module,
        args: NeuroTrainingArguments,
        train_dataset: datasets.Dataset | torch.utils.data.Dataset | None = None,
        eval_dataset: datasets.Dataset | torch.utils.data.Dataset | None = None,
        *,
        loss_fn: LossFn,
        metrics: StreamingMetrics | None = None,
        callbacks: list | None = None,
        **kwargs: Any,
    ) -> None:
        from ..data.loader import BatchFetchDataset, passthrough_collate

        seed = args.data_seed if args.data_seed is not None else args.seed

        def wrap(ds):
            return BatchFetchDataset(ds, seed=seed) if isinstance(ds, datasets.Dataset) else ds

        self.loss_fn = loss_fn
        self.metrics = metrics
        callbacks = list(callbacks or [])
        if args.monitor_resources:
            callbacks.append(MonitorCallback())
        callbacks.append(HistoryRecorder(args.output_dir))
        train_dataset = wrap(train_dataset)
        if hasattr(train_dataset, "set_epoch"):
            callbacks.append(DataEpochCallback(train_dataset))
        if args.early_stopping_patience is not None:
            callbacks.append(
                EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold)
            )
        kwargs.setdefault("data_collator", passthrough_collate)
        # Trainer.__init__ reads `model.config` when label smoothing is on, which plain nn.Modules lack;
        # our losses apply the smoothing themselves, so hide it from Trainer during construction.
        smoothing, args.label_smoothing_factor = args.label_smoothing_factor, 0.0
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=wrap(eval_dataset),
            compute_metrics=self._stream_metrics if metrics is not None else None,
            callbacks=callbacks,
            **kwargs,
        )
        args.label_smoothing_factor = smoothing
        # compute_loss normalises by num_items_in_batch itself (exact gradient accumulation / DDP).
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        check_distributed_launch(self.accelerator.num_processes)

    # --- forward and loss -------------------------------------------------------------------------
    def model_forward(self, model: torch.nn.Module, inputs: dict[str, Any]) -> Any:
        """Call the model on a batch; tasks whose models take other inputs override this."""
        return model(inputs["pixel_values"])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = self.model_forward(model, inputs)
        loss = self.loss_fn(logits_of(outputs), inputs["labels"], num_items_in_batch)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # num_items_in_batch counts every rank's items; DDP averages gradients over ranks.
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.stop_on_nonfinite_loss:
            bad = (~torch.isfinite(loss)).any().float()
            if self.accelerator.num_processes > 1:
                bad = self.accelerator.reduce(bad, reduction="max")  # every rank stops together
            if bad.item() > 0:
                last = last_good_checkpoint(self.args.output_dir)
                raise TrainingHaltedError(
                    f"non-finite training loss ({loss.item()}) at step {self.state.global_step + 1}; stopped before "
                    f"the optimizer step. Last good checkpoint: {last or 'none yet'}"
                )
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = self.model_forward(model, inputs)
            logits = logits_of(outputs)
            labels = inputs.get("labels")
            loss = self.loss_fn(logits, labels) if labels is not None else None
        if prediction_loss_only:
            return loss.detach() if loss is not None else None, None, None
        return (loss.detach() if loss is not None else None), logits.detach(), labels

    # --- streaming metrics ------------------------------------------------------------------------
    def _stream_metrics(self, eval_pred, compute_result: bool = False) -> dict[str, float]:
        self.metrics.update(eval_pred.predictions, eval_pred.label_ids)
        if not compute_result:
            return {}
        result = self.metrics.compute()
        self.on_metrics_computed(self.metrics)
        self.metrics.reset()
        return result

    def on_metrics_computed(self, metrics: StreamingMetrics) -> None:
        """Hook: keep what a task reports beyond scalars (e.g. a confusion matrix)."""

    def evaluation_loop(self, *args, **kwargs):
        if self.metrics is not None:
            self.metrics.reset()
        return super().evaluation_loop(*args, **kwargs)

    # --- checkpoints ------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            path = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            mark_complete(path, self.state.global_step)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """``resume_from_checkpoint=True`` resumes from the newest *complete* checkpoint."""
        if resume_from_checkpoint is True:
            last = last_good_checkpoint(self.args.output_dir)
            if last is None:
                raise TrainingHaltedError(f"{self.args.output_dir}: no complete checkpoint to resume from")
            resume_from_checkpoint = str(last)
        if resume_from_checkpoint and self.args.should_save:
            for path in remove_incomplete(self.args.output_dir):
                logger.warning("removed incomplete checkpoint %s", path)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

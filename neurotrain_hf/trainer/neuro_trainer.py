"""NeuroTrainer: the ``transformers.Trainer`` every neurotrain task subclasses.

The contract a task plugs into (see docs/architecture.md):

- ``loss_fn`` (optional): a registry loss on ``(logits, labels)``; without one the model's own loss is used
  (models called with their labels, as transformers/diffusers models compute it themselves).
- ``inference`` (an ``Inference``): how a batch becomes model outputs and outputs become metric inputs;
  shared by evaluation, the Tester and the Predictor (e.g. sliding windows for volumes).
- ``count_items(inputs)``: what ``num_items_in_batch`` counts (samples by default; None for losses that
  are not sums over items, such as Dice or InfoNCE).
- ``loss_inputs`` / ``loss_from_outputs``: what the loss compares (e.g. upsampled dense logits) and
  extra terms (e.g. deep supervision).
- ``eval_artifacts()``: what an evaluation keeps beyond scalars (saved with each checkpoint).

Trainers compute; the Tester's files (per-sample rows, pictures, result files) are written by the
task's output hooks, which ``prediction_step`` feeds through a ``SampleWriter`` (``writing_samples``).

Evaluation keeps metric state per rank and reduces it once (``trainer/evaluation.py``); checkpoints are
marked complete before older ones are rotated away (``trainer/checkpointing.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import PartialState
from transformers import EarlyStoppingCallback, PreTrainedModel, Trainer
from transformers.trainer_pt_utils import find_batch_size

from ..data.streaming import StreamingStateCallback, StreamingTrainSet
from ..data.streaming import train_dataloader as streaming_dataloader
from ..errors import TrainingHaltedError
from ..losses import WeightedLoss
from ..metrics.registry import StreamingMetrics
from ..models.registry import logits_of
from .callbacks import DataEpochCallback, MonitorCallback, NonFiniteLossCallback
from .checkpointing import (
    EVAL_ARTIFACTS,
    discard,
    is_complete,
    is_write_error,
    last_good_checkpoint,
    load_model_weights,
    mark_complete,
    marker,
    remove_incomplete,
    rotate_checkpoints,
    write_error_text,
)
from .consolidation import save_config_beside
from .evaluation import EvalState, SampleBatch, SampleWriter, first_n, real_count
from .inference import Inference
from .neuro_config import NeuroTrainingArguments, deepspeed_requested
from .node_folders import agree_on_checkpoint, any_rank, sees_main_folder
from .run_folder import HistoryRecorder

logger = logging.getLogger(__name__)
INDEX_KEY = "sample_index"


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
    """Trainer with registry losses, streaming per-rank metrics, run-folder recording and safe checkpoints."""

    def __init__(
        self,
        model: torch.nn.Module,
        args: NeuroTrainingArguments,
        train_dataset: datasets.Dataset | torch.utils.data.Dataset | None = None,
        eval_dataset: datasets.Dataset | torch.utils.data.Dataset | None = None,
        *,
        loss_fn: WeightedLoss | None = None,
        metrics: StreamingMetrics | None = None,
        inference: Inference | None = None,
        callbacks: list | None = None,
        **kwargs: Any,
    ) -> None:
        from ..data.loader import passthrough_collate

        self.loss_fn = loss_fn
        self.metrics = metrics
        self.inference = inference or Inference()
        self.sample_writer: SampleWriter | None = None
        self.last_eval: dict[str, Any] = {}
        self._last_eval_step = -1
        self._nonfinite: torch.Tensor | None = None
        self._terms: dict[str, torch.Tensor] = {}
        self._terms_since = 0
        self._protected: str | None = None
        callbacks = list(callbacks or [])
        if args.monitor_resources:
            callbacks.append(MonitorCallback())
        callbacks.append(HistoryRecorder(args.output_dir))
        train_dataset = self.wrap_dataset(train_dataset, args)
        if hasattr(train_dataset, "set_epoch"):
            callbacks.append(DataEpochCallback(train_dataset))
        if isinstance(train_dataset, StreamingTrainSet):  # its position goes into each checkpoint
            callbacks.append(StreamingStateCallback())
        if args.early_stopping_patience is not None:
            callbacks.append(
                EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold)
            )
        if args.stop_on_nonfinite_loss:
            callbacks.append(NonFiniteLossCallback(self))
        kwargs.setdefault("data_collator", passthrough_collate)
        if deepspeed_requested(args):
            from .deepspeed_compat import patch_scalar_broadcast

            patch_scalar_broadcast()  # DeepSpeed 0.19 cannot broadcast 0-dim parameters (CLIP's logit_scale)
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=self.wrap_dataset(eval_dataset, args, indices=True),
            callbacks=callbacks,
            **kwargs,
        )
        # Our losses are normalised by num_items_in_batch (exact accumulation and DDP); a model's own loss
        # is when transformers detected that its forward takes the count.
        if loss_fn is None:  # the model's own loss: evaluation passes the labels too
            self.inference.label_names = tuple(self.label_names)
        self._model_counts_items = bool(self.model_accepts_loss_kwargs)
        self.model_accepts_loss_kwargs = loss_fn is not None or self._model_counts_items
        self.loss_is_scaled_for_ga = None  # scaled exactly when num_items_in_batch is not None
        check_distributed_launch(self.accelerator.num_processes)

    @staticmethod
    def wrap_dataset(dataset, args: NeuroTrainingArguments, indices: bool = False):
        """``datasets.Dataset`` -> batch-fetching torch dataset (eval sets also yield sample indices)."""
        from ..data.loader import BatchFetchDataset

        if not isinstance(dataset, datasets.Dataset):
            return dataset
        seed = args.data_seed if args.data_seed is not None else args.seed
        return BatchFetchDataset(dataset, seed=seed, index_key=INDEX_KEY if indices else None)

    def get_train_dataloader(self):
        """A streamed train split is already split by process: its own loader (data/streaming.py)."""
        if isinstance(self.train_dataset, StreamingTrainSet):
            return streaming_dataloader(self.train_dataset, self.args)
        return super().get_train_dataloader()

    def get_eval_dataloader(self, eval_dataset=None):
        if isinstance(eval_dataset, datasets.Dataset):
            eval_dataset = self.wrap_dataset(eval_dataset, self.args, indices=True)
        return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return super().get_test_dataloader(self.wrap_dataset(test_dataset, self.args, indices=True))

    # --- forward and loss -------------------------------------------------------------------------
    def model_forward(self, model: torch.nn.Module, inputs: dict[str, Any], **extra: Any) -> Any:
        """Training forward: keyword inputs; labels go to the model only when it computes the loss."""
        kwargs = self.inference.model_inputs(inputs)
        if self.loss_fn is None:
            kwargs.update({k: inputs[k] for k in self.label_names if k in inputs})
        return model(**kwargs, **extra)

    def count_items(self, inputs: dict[str, Any]) -> torch.Tensor | int | None:
        """Items a summed loss is divided by: samples with labels (None: the loss is a batch mean)."""
        labels = inputs.get("labels")
        if labels is None or (self.loss_fn is None and not self._model_counts_items):
            return None
        return labels.shape[0] if torch.is_tensor(labels) else len(labels)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device):
        counts = [self.count_items(batch) for batch in batch_samples]
        if not counts or any(c is None for c in counts):
            return None
        total = torch.as_tensor(sum(int(c) for c in counts), device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            total = self.accelerator.gather(total).sum()
        return total

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        extra = {}
        if self.loss_fn is None and self._model_counts_items and num_items_in_batch is not None:
            extra["num_items_in_batch"] = num_items_in_batch
        outputs = self.model_forward(model, inputs, **extra)
        if self.loss_fn is None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
        else:
            loss = self.loss_from_outputs(outputs, inputs, num_items_in_batch)
        scale = 1.0
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            scale = float(self.accelerator.num_processes)  # the count is global; DDP averages over ranks
            loss = loss * scale
        elif model.training and num_items_in_batch is None:
            scale = 1.0 / self.current_gradient_accumulation_steps  # what training_step divides by
        if model.training and self.loss_fn is not None:
            for name, value in self.loss_fn.last_terms.items():
                self._terms[name] = self._terms.get(name, 0.0) + value * scale
        return (loss, outputs) if return_outputs else loss

    def loss_inputs(self, outputs: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        """(logits, labels) the loss compares; tasks adapt shapes here (e.g. upsample dense logits)."""
        return logits_of(outputs), inputs["labels"]

    def loss_from_outputs(
        self, outputs: Any, inputs: dict[str, Any], num_items_in_batch=None
    ) -> torch.Tensor:
        """The training loss of a batch from the model outputs (tasks add e.g. deep supervision)."""
        logits, labels = self.loss_inputs(outputs, inputs)
        return self.loss_fn(logits, labels, num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        return self.track_nonfinite(super().training_step(model, inputs, num_items_in_batch))

    def track_nonfinite(self, loss: torch.Tensor) -> torch.Tensor:
        """Note a non-finite micro-batch loss (kept on the device; checked once per optimizer step)."""
        if self.args.stop_on_nonfinite_loss:
            bad = ~torch.isfinite(loss.detach())
            self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        return loss

    def check_nonfinite_loss(self) -> None:
        """Before the optimizer step: stop every rank if any rank saw a non-finite loss in this step."""
        if self._nonfinite is None:
            return
        flag = self._nonfinite.float()
        self._nonfinite = None
        if self.accelerator.num_processes > 1:
            flag = self.accelerator.reduce(flag, reduction="max")
        if flag.item() == 0:
            return
        step = self.state.global_step + 1
        last = last_good_checkpoint(self.args.output_dir)
        record = {
            "rank": self.args.process_index,
            "step": step,
            "last_good_checkpoint": str(last) if last else None,
        }
        folder = Path(self.args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"halted_rank{self.args.process_index}.json").write_text(
            json.dumps(record), encoding="utf-8"
        )
        raise TrainingHaltedError(
            f"non-finite training loss at step {step}; stopped before the optimizer step. "
            f"Last good checkpoint: {last or 'none yet'}"
        )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Training logs gain one ``loss_<term>`` column per term of a summed loss."""
        if "loss" in logs and self._terms:
            steps = max(self.state.global_step - self._terms_since, 1)
            names = sorted(self._terms)
            values = torch.stack([torch.as_tensor(self._terms[n], dtype=torch.float32) for n in names])
            values = values.to(self.args.device)
            if self.accelerator.num_processes > 1:
                values = self.accelerator.reduce(values, reduction="mean")
            for name, value in zip(names, values.tolist()):
                logs[f"loss_{name}"] = value / steps
            self._terms, self._terms_since = {}, self.state.global_step
        super().log(logs, start_time)

    # --- evaluation: per-rank state, reduced once -------------------------------------------------
    def per_item_loss(self, outputs: Any, inputs: dict[str, Any], batch_size: int) -> torch.Tensor | None:
        """Per-sample loss, same definition as training (the model's batch loss for own-loss models)."""
        if self.loss_fn is not None:
            if inputs.get("labels") is None:
                return None
            return self.loss_fn.per_item(*self.loss_inputs(outputs, inputs))
        loss = outputs.get("loss") if isinstance(outputs, dict) else None
        return None if loss is None else loss.detach().float().reshape(1).expand(batch_size)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        indices = inputs.pop(INDEX_KEY, None)
        inputs = self._prepare_inputs(inputs)
        batch_size = find_batch_size(inputs) or 0
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = self.inference(model, inputs)
            losses = self.per_item_loss(outputs, inputs, batch_size)
        n = real_count(batch_size, self.accelerator)
        predictions, references = self.inference.metric_inputs(outputs, inputs)
        self._eval_state.update(n, losses, predictions, references)
        if self.sample_writer is not None and n:
            index_list = indices[:n].tolist() if indices is not None else list(range(n))
            self.sample_writer.write(
                SampleBatch(
                    index_list,
                    first_n(predictions, n),
                    first_n(references, n),
                    first_n(losses, n),
                    first_n(inputs, n),
                )
            )
        return None, None, None

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        self._eval_state = EvalState(self.metrics)
        output = super().evaluation_loop(
            dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
        )
        state = self._eval_state.reduce(self.accelerator)
        results = state.results()
        self.last_eval = self.eval_artifacts(state)
        self._last_eval_step = self.state.global_step
        output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in results.items()})
        return output._replace(num_samples=results["num_samples"])

    def eval_artifacts(self, state: EvalState) -> dict[str, Any]:
        """What an evaluation keeps beyond scalars (JSON-able); saved with each checkpoint."""
        return {}

    @contextlib.contextmanager
    def writing_samples(self, task: Any, out: Any):
        """While active, ``predict``/``evaluate`` hand each batch to the task's output hooks (``out``: a
        ``TestOutputs``); the parts are merged on the main process when it ends."""
        self.sample_writer = SampleWriter(task, out, self.accelerator)
        try:
            yield self.sample_writer
        finally:
            writer, self.sample_writer = self.sample_writer, None
            writer.close()

    # --- checkpoints ------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        """Save, mark complete, then rotate: the run folder always holds a complete checkpoint.

        A failed write (full disk, quota) stops the run with one line naming the checkpoint (and the file
        when the error says); the half-written folder is removed, the previous complete one left as it was.
        """
        run_dir = Path(self._get_output_dir(trial=trial))
        path = run_dir / f"checkpoint-{self.state.global_step}"
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
            self.args.save_total_limit = limit
            self.accelerator.wait_for_everyone()
            save_config_beside(self, path)
            if not self.args.should_save:
                return
            if self.last_eval and self._last_eval_step == self.state.global_step:  # this step's evaluation
                (path / EVAL_ARTIFACTS).write_text(json.dumps(self.last_eval), encoding="utf-8")
            mark_complete(path, self.state.global_step, **self.batch_layout())
        except Exception as exc:
            if not is_write_error(exc):
                raise
            raise self.save_failed(path, exc) from None
        finally:
            self.args.save_total_limit = limit
        keep = [p for p in (self.state.best_model_checkpoint, self._protected) if p]
        rotate_checkpoints(run_dir, limit, keep=keep)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Weights on every node's main process under ``save_on_each_node``: transformers 5's
        ``save_pretrained`` writes on global rank 0 only, whatever ``is_main_process`` the Trainer passes,
        which leaves other nodes' checkpoints without weights (nothing to resume from)."""
        if not (self.args.save_on_each_node and self.args.should_save and not self.is_world_process_zero()):
            return super()._save(output_dir, state_dict)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.should_save_on_this_rank = lambda is_main_process: is_main_process  # this call only
        try:
            return super()._save(output_dir, state_dict)
        finally:
            del model.should_save_on_this_rank

    def save_failed(self, path: Path, exc: BaseException) -> TrainingHaltedError:
        """The one-line stop for a checkpoint that could not be written (its partial folder removed)."""
        if self.args.should_save:
            discard(path)
        last = last_good_checkpoint(path.parent)
        return TrainingHaltedError(
            f"could not write checkpoint {path} ({write_error_text(exc)}); stopped at step "
            f"{self.state.global_step}. Last complete checkpoint: {last or 'none'} (resume from it with "
            '[training] resume_from_checkpoint = "last" once there is room)'
        )

    def _reloads_like_from_pretrained(self, model: torch.nn.Module, folder: str | None) -> bool:
        """A plain transformers model and a checkpoint it saved (DeepSpeed, FSDP, PEFT: Trainer's own path)."""
        return (
            folder is not None
            and isinstance(model, PreTrainedModel)
            and not getattr(model, "_hf_peft_config_loaded", False)
            and not self.is_deepspeed_enabled
            and not self.is_fsdp_enabled
            and (Path(folder) / "config.json").is_file()
        )

    def _load_from_checkpoint(
        self, resume_from_checkpoint: str, model: torch.nn.Module | None = None
    ) -> None:
        """Resume: the checkpoint's weights, key conversions included (see ``load_model_weights``)."""
        target = self.model if model is None else model
        if self._reloads_like_from_pretrained(target, resume_from_checkpoint):
            load_model_weights(target, resume_from_checkpoint)
        else:
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        """``load_best_model_at_end``: the best checkpoint's weights, key conversions included."""
        best = self.state.best_model_checkpoint
        if self._reloads_like_from_pretrained(self.model, best):
            logger.info("loading the best model from %s (score %s)", best, self.state.best_metric)
            load_model_weights(self.model, best)
        else:
            super()._load_best_model()

    def batch_layout(self) -> dict[str, int]:
        """Processes, per-device batch, accumulation and their product: what a checkpoint was trained with."""
        args = self.args
        per_device, steps = args.per_device_train_batch_size, args.gradient_accumulation_steps
        return {
            "world_size": args.world_size,
            "per_device_batch": per_device,
            "accumulation": steps,
            "global_batch": args.world_size * per_device * steps,
        }

    def check_global_batch(self, checkpoint: str | Path) -> None:
        """Elastic resume: another process count is fine, another global batch only when allowed."""
        then, now = marker(checkpoint), self.batch_layout()
        if "global_batch" not in then or then["global_batch"] == now["global_batch"]:
            if then.get("world_size", now["world_size"]) != now["world_size"]:
                logger.info(
                    "resuming %s on %d processes (written by %d): same global batch of %d",
                    checkpoint,
                    now["world_size"],
                    then["world_size"],
                    now["global_batch"],
                )
            return
        if self.args.allow_global_batch_change:
            logger.warning(
                "resuming %s with global batch %d (written with %d)",
                checkpoint,
                now["global_batch"],
                then["global_batch"],
            )
            return
        raise TrainingHaltedError(
            f"resume: {checkpoint} was trained with a global batch of {then['global_batch']} ({then['world_size']} "
            f"process(es) x {then['per_device_batch']} x {then['accumulation']} accumulation), this run has "
            f"{now['global_batch']} ({now['world_size']} x {now['per_device_batch']} x {now['accumulation']}): "
            "keep the product, or set [training] allow_global_batch_change = true"
        )

    def use_node_folders(self) -> None:
        """Nodes without a shared filesystem (a run folder per node): each node's main process saves
        the checkpoints (``save_on_each_node``), so that every node can resume from its own disk."""
        if self.args.world_size == 1 or self.args.save_on_each_node:
            return
        state = PartialState()  # not self.accelerator: a search trial rebuilds it inside train()
        if any_rank(state, not sees_main_folder(state, self.args.output_dir)):
            logger.info("the run folder is not shared by every node: each node saves its own checkpoints")
            self.args.save_on_each_node = True

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """``True``/``"last"``: newest complete checkpoint (error if none); ``"auto"``: that, or start fresh.

        A checkpoint named by path is never deleted (not by cleanup, not by rotation).
        """
        self.use_node_folders()
        if resume_from_checkpoint in (True, "auto"):
            last = agree_on_checkpoint(PartialState(), last_good_checkpoint(self.args.output_dir))
            if last is None and resume_from_checkpoint is True:
                raise TrainingHaltedError(f"{self.args.output_dir}: no complete checkpoint to resume from")
            resume_from_checkpoint = str(last) if last is not None else None
        elif resume_from_checkpoint:
            self._protected = str(Path(resume_from_checkpoint))
            agree_on_checkpoint(PartialState(), resume_from_checkpoint)
            check_resumable(resume_from_checkpoint)
        if resume_from_checkpoint:
            self.check_global_batch(resume_from_checkpoint)
        if resume_from_checkpoint and self.args.should_save:
            for path in remove_incomplete(self.args.output_dir, keep=[resume_from_checkpoint]):
                logger.warning("removed incomplete checkpoint %s", path)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


def check_resumable(path: str | Path) -> None:
    """A named checkpoint must exist and be complete (it is never deleted)."""
    path = Path(path)
    if not path.is_dir():
        raise TrainingHaltedError(f"[training] resume_from_checkpoint {str(path)!r}: folder not found")
    if not is_complete(path):
        raise TrainingHaltedError(
            f"[training] resume_from_checkpoint {str(path)!r}: incomplete (a save was interrupted); "
            "use `last` or `auto` for the newest complete checkpoint"
        )

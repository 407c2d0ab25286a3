"""``NeuroTrainingArguments``: the ``[training]`` fields every task shares, on top of ``TrainingArguments``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..errors import ConfigError


@dataclass
class NeuroTrainingArguments(TrainingArguments):
    """TrainingArguments plus losses by name, metrics by name, early stopping and run-folder extras.

    Re-defaults: evaluate and save every epoch, keep the best checkpoint, stream evaluation metrics
    (``batch_eval_metrics``), keep dataset columns, log every 10 steps.
    """

    batch_size: int | None = field(
        default=None,
        metadata={
            "help": "NeuroTrain batch size per device: the default for per_device_train_batch_size and "
            "per_device_eval_batch_size.",
            "min": 1,
        },
    )
    loss: str = field(
        default="ce",
        metadata={
            "help": "Loss name from the registry, or a sum such as `ce+focal`; `neurotrain list losses`."
        },
    )
    loss_weights: list[float] | None = field(
        default=None, metadata={"help": "Weights of the terms of a summed loss (default: all 1.0)."}
    )
    class_weights: list[float] | None = field(
        default=None, metadata={"help": "Per-class weights for cross-entropy and focal losses."}
    )
    label_smoothing: float = field(
        default=0.0,
        metadata={
            "help": "Label smoothing of the cross-entropy loss (the loss's own option; eval and test use it too).",
            "min": 0.0,
            "max": 1.0,
        },
    )
    focal_gamma: float = field(
        default=2.0, metadata={"help": "Focusing parameter of the focal loss.", "min": 0.0}
    )
    metrics: list[str] | None = field(
        default=None,
        metadata={"help": "Evaluation metrics by name (default: the task's); `neurotrain list metrics`."},
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without improvement of metric_for_best_model "
            "(direction: greater_is_better); unset disables early stopping.",
            "min": 1,
        },
    )
    early_stopping_threshold: float = field(
        default=0.0,
        metadata={"help": "Minimum improvement (min_delta) that counts for early stopping.", "min": 0.0},
    )
    stop_on_nonfinite_loss: bool = field(
        default=True,
        metadata={
            "help": "Stop with a clear error when the training loss is NaN/inf; the last good checkpoint stays."
        },
    )
    monitor_resources: bool = field(
        default=True, metadata={"help": "Log throughput, CPU RAM and GPU memory with the training logs."}
    )
    plots: bool = field(default=True, metadata={"help": "Write training-curve and confusion-matrix PNGs."})

    # Re-defaulted TrainingArguments fields.
    eval_strategy: str = field(
        default="epoch", metadata={"help": "When to evaluate: `no`, `steps` or `epoch`."}
    )
    save_strategy: str = field(
        default="epoch", metadata={"help": "When to save a checkpoint: `no`, `steps`, `epoch` or `best`."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every N optimizer steps."})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints to keep (the best one is always kept)."}
    )
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Load the best checkpoint when training ends (needs evaluation)."}
    )
    batch_eval_metrics: bool = field(
        default=True, metadata={"help": "Stream metric state batch by batch instead of keeping all logits."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Drop dataset columns the model's forward does not name."}
    )
    dataloader_pin_memory: bool = field(
        default=True,
        metadata={"help": "Pin loader memory (turned off automatically without an accelerator)."},
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "`last`: the newest complete checkpoint (error if none); `auto`: that, or start fresh "
            "(preemptible jobs); or a checkpoint folder path (never deleted)."
        },
    )

    def __post_init__(self) -> None:
        if self.batch_size is None:
            self.batch_size = self.per_device_train_batch_size
        elif self.batch_size != self.per_device_train_batch_size:
            raise ConfigError(
                f"batch_size = {self.batch_size} conflicts with per_device_train_batch_size = "
                f"{self.per_device_train_batch_size}; set one of them"
            )
        if str(self.eval_strategy) == "no":
            self.load_best_model_at_end = False
        if self.early_stopping_patience is not None and str(self.eval_strategy) == "no":
            raise ConfigError(
                "early_stopping_patience needs evaluation: set eval_strategy to `epoch` or `steps`"
            )
        if self.label_smoothing_factor:
            raise ConfigError(
                "label_smoothing_factor is not used: set [training] label_smoothing (the loss's own option)"
            )
        use_cpu_without_gpu(self)
        if not accelerator_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; torch warns otherwise
        super().__post_init__()


def accelerator_available() -> bool:
    """A CUDA (or XPU/MPS) device that pinned memory would serve."""
    import torch

    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(xpu and xpu.is_available()) or bool(mps and mps.is_available())


def use_cpu_without_gpu(args: TrainingArguments) -> None:
    """Without a GPU, turn on ``use_cpu`` where TrainingArguments needs it to work at all.

    Multi-process launches (WORLD_SIZE > 1) need it for the ranks to form one gloo group; without it
    each process trains alone on the full data and nothing warns (see docs/distributed.md). bf16 needs
    it too. DeepSpeed on CPU is the exception (it must not be set, see the platform notes).
    """
    import torch

    if args.use_cpu or torch.cuda.is_available():
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true")
    if (world > 1 or args.bf16) and not deepspeed:
        args.use_cpu = True

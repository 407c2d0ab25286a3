"""``NeuroTrainingArguments``: the ``[training]`` fields every task shares, on top of ``TrainingArguments``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from transformers import TrainingArguments

from ..errors import ConfigError


@dataclass
class NeuroTrainingArguments(TrainingArguments):
    """TrainingArguments plus metrics by name, early stopping and run-folder extras (what every task reads).

    Re-defaults: evaluate and save every epoch, keep the best checkpoint, stream evaluation metrics
    (``batch_eval_metrics``), keep dataset columns, log every 10 steps. A task's subclass names the metric
    families it computes (``metric_families``) and, with a ``loss`` key, the loss kinds it takes
    (``loss_kinds``); the config check refuses anything else in one line.
    """

    metric_families: ClassVar[tuple[str, ...]] = ()
    loss_kinds: ClassVar[tuple[str, ...]] = ()

    batch_size: int | None = field(
        default=None,
        metadata={
            "help": "NeuroTrain batch size per device: the default for per_device_train_batch_size and "
            "per_device_eval_batch_size.",
            "min": 1,
        },
    )
    metrics: list[str] | None = field(
        default=None,
        metadata={
            "help": "Evaluation metrics by name (default: the task's); `neurotrain list metrics --task TASK`."
        },
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
    allow_global_batch_change: bool = field(
        default=False,
        metadata={
            "help": "Resume a checkpoint written with another global batch (processes x per-device batch x "
            "accumulation). Off: refused in one line, since the resumed run would not continue the same "
            "schedule. Another process count with the same global batch always resumes (elastic)."
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
        fsdp_without_gpu(self)
        use_cpu_without_gpu(self)
        cpu_threads_under_launcher()
        check_offload_optimizer(self)
        deepspeed_without_gpu(self)
        if not accelerator_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; torch warns otherwise
        super().__post_init__()


def accelerator_available() -> bool:
    """A CUDA (or XPU/MPS) device that pinned memory would serve."""
    import torch

    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(xpu and xpu.is_available()) or bool(mps and mps.is_available())


def deepspeed_requested(args: TrainingArguments) -> bool:
    """DeepSpeed is on: ``accelerate launch`` with a DeepSpeed config, or ``[training] deepspeed`` set."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true") or bool(args.deepspeed)


def fsdp_without_gpu(args: TrainingArguments) -> None:
    """Refuse FSDP without a GPU in one line: Accelerate enables FSDP on accelerator devices only, so on
    CPU processes an FSDP config silently trains plain DDP (with ``use_cpu``) or each process alone."""
    requested = os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true") or bool(args.fsdp)
    if requested and not accelerator_available():
        raise ConfigError(
            "FSDP needs GPUs: Accelerate turns an FSDP config on CPU processes into plain DDP without a word. "
            "On CPU use recipes/accelerate/zero3.yaml (DeepSpeed ZeRO-3 shards the same states over gloo); "
            "on GPUs recipes/accelerate/fsdp2.yaml (benchmarks/gpu_proof.sh checks it)"
        )


def cpu_threads_under_launcher() -> None:
    """Without a GPU, ``accelerate launch`` (no ``--cpu``) sets ``OMP_NUM_THREADS=1`` for every process,
    halving a 2-core machine's speed: give each process its share of the cores instead.

    ``NEUROTRAIN_CPU_THREADS`` sets the count explicitly.
    """
    import torch

    wanted = os.environ.get("NEUROTRAIN_CPU_THREADS")
    if wanted:
        torch.set_num_threads(int(wanted))
        return
    launched = "ACCELERATE_MIXED_PRECISION" in os.environ  # set by `accelerate launch` for its processes
    if torch.cuda.is_available() or not launched or os.environ.get("OMP_NUM_THREADS") != "1":
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    share = max(1, len(os.sched_getaffinity(0)) // local)
    if share > torch.get_num_threads():
        torch.set_num_threads(share)


def use_cpu_without_gpu(args: TrainingArguments) -> None:
    """Without a GPU, turn on ``use_cpu`` where TrainingArguments needs it to work at all.

    Multi-process launches (WORLD_SIZE > 1) need it for the ranks to form one gloo group; without it
    each process trains alone on the full data and nothing warns (see docs/distributed.md). bf16 needs
    it too. DeepSpeed on CPU is the exception (it must not be set: ``deepspeed_without_gpu`` does its job).
    """
    import torch

    if args.use_cpu or torch.cuda.is_available():
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if (world > 1 or args.bf16) and not deepspeed_requested(args):
        args.use_cpu = True


def deepspeed_without_gpu(args: TrainingArguments) -> None:
    """DeepSpeed without a GPU: put the ranks in one gloo group before TrainingArguments sets up devices.

    Left alone, Accelerate passes DeepSpeed no backend on CPU, then takes "no backend" for "one process":
    every rank reports world size 1 and DeepSpeed stops on ``train_batch_size is not equal to
    micro_batch_per_gpu * gradient_acc_step * world_size``. ``use_cpu`` does not help (it turns DeepSpeed
    off). So this creates Accelerate's ``PartialState(backend="gloo")`` itself (DeepSpeed's own
    ``init_distributed`` runs inside it) and tells TrainingArguments to use that state
    (``accelerator_config.use_configured_state``; the user's other accelerator_config values are kept).
    DeepSpeed picks its CPU accelerator by itself, ``DS_ACCELERATOR`` is not needed. A process started
    without a launcher gets the rank-0-of-1 environment DeepSpeed needs (it would try MPI discovery).
    With a GPU this does nothing: the ordinary NCCL path works.
    """
    import datetime

    import torch

    if not deepspeed_requested(args) or torch.cuda.is_available():
        return
    from accelerate import PartialState
    from transformers.trainer_pt_utils import AcceleratorConfig

    if "LOCAL_RANK" not in os.environ:  # plain `python recipe.py`: one process, no launcher
        defaults = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
        for name, value in defaults.items():
            os.environ.setdefault(name, value)
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    flag = os.environ.get("ACCELERATE_USE_DEEPSPEED")
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"  # also for `[training] deepspeed` without the launcher
    try:
        PartialState(backend="gloo", timeout=datetime.timedelta(seconds=args.ddp_timeout))
    finally:
        if flag is None:
            del os.environ["ACCELERATE_USE_DEEPSPEED"]
        else:
            os.environ["ACCELERATE_USE_DEEPSPEED"] = flag
    config = args.accelerator_config
    if config is None:
        config = {}
    elif isinstance(config, str):
        config = AcceleratorConfig.from_json_file(config).to_dict()
    elif isinstance(config, AcceleratorConfig):
        config = config.to_dict()
    args.accelerator_config = {**config, "use_configured_state": True}


# Optimizers Accelerate turns into their DeepSpeed CPU twin under optimizer offload without changing the maths.
OFFLOAD_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adagrad", "lion_32bit")


def check_offload_optimizer(args: TrainingArguments) -> None:
    """Refuse an optimizer that DeepSpeed's optimizer offload would silently replace.

    With ``offload_optimizer_device`` cpu or nvme (``recipes/accelerate/zero3_offload.yaml``), Accelerate
    swaps the Trainer's torch optimizer for a DeepSpeed CPU optimizer: AdamW -> DeepSpeedCPUAdam (AdamW
    mode), Adagrad and 32-bit Lion -> their CPU twins, anything else (SGD, Adafactor, ...) -> DeepSpeedCPUAdam
    as Adam, with no word. A DeepSpeed config that names its own ``optimizer`` or sets
    ``zero_force_ds_cpu_optimizer: false`` is left alone.
    """
    if not deepspeed_requested(args):
        return
    device = os.environ.get("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none")
    config = args.deepspeed or os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")
    if config != "none":
        if not isinstance(config, dict):
            if not Path(config).is_file():
                return  # TrainingArguments says what is wrong with it
            config = json.loads(Path(config).read_text(encoding="utf-8"))
        if "optimizer" in config or config.get("zero_force_ds_cpu_optimizer", True) is False:
            return
        device = config.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none")
    optim = str(getattr(args.optim, "value", args.optim))
    if str(device).lower() not in ("none", "") and optim not in OFFLOAD_OPTIMIZERS:
        raise ConfigError(
            f"optim = {optim!r} with DeepSpeed optimizer offload ({device}): Accelerate would silently replace "
            f"it by DeepSpeed's CPU Adam. Use one of {', '.join(OFFLOAD_OPTIMIZERS)}, or a ZeRO config without "
            "offload_optimizer_device (recipes/accelerate/zero2.yaml, zero3.yaml)"
        )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

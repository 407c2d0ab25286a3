"""Callbacks NeuroTrainer adds: resource monitoring, data epochs, the non-finite-loss stop."""

from __future__ import annotations

import math
import time

import psutil
import torch
from transformers import TrainerCallback


class MonitorCallback(TrainerCallback):
    """Adds ``samples_per_second``, ``cpu_ram_mb`` and (with CUDA) ``gpu_mem_mb`` to each training log."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._t0 = None
        self._step0 = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0, self._step0 = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs or self._t0 is None:
            return
        now = time.perf_counter()
        steps = state.global_step - self._step0
        if steps > 0 and now > self._t0:
            samples = steps * args.train_batch_size * args.gradient_accumulation_steps * args.world_size
            logs["samples_per_second"] = round(samples / (now - self._t0), 2)
        self._t0, self._step0 = now, state.global_step
        logs["cpu_ram_mb"] = round(self._process.memory_info().rss / 2**20, 1)
        if torch.cuda.is_available():
            logs["gpu_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)


class DataEpochCallback(TrainerCallback):
    """Tells the training dataset which epoch starts (it seeds the augmentations).

    Accelerate forwards ``set_epoch`` to the dataset, except through the loader that skips the
    already-seen batches of a resumed epoch; this callback covers both paths.
    """

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor((state.epoch or 0.0) + 1e-6))


class NonFiniteLossCallback(TrainerCallback):
    """Right before each optimizer step, stops every rank if a loss of the step was NaN/inf."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer.check_nonfinite_loss()

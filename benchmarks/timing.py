"""Timing pieces the training-throughput benchmarks share: device, synchronisation, a step timer."""

from __future__ import annotations

import time

import torch
from transformers import TrainerCallback


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    """Wait for queued GPU work, so wall-clock times are real."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepTimer(TrainerCallback):
    """Times optimizer steps ``warmup + 1`` .. last (``rate`` = steps per second)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.t0 = self.t1 = None
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            sync()
            self.t0 = time.perf_counter()
        elif state.global_step > self.warmup:
            sync()
            self.t1, self.steps = time.perf_counter(), state.global_step - self.warmup

    def rate(self) -> float:
        return self.steps / (self.t1 - self.t0)

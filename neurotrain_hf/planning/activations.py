"""Activation memory of a training step, measured: the tensors autograd keeps for the backward pass.

A short forward through the task's own loss (``trainer.compute_loss``) at two small batch sizes on CPU,
counting every tensor saved for backward once (by storage); the difference gives the bytes per sample,
which scale linearly to the per-device batch. Mixed precision halves the floating-point ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Activations:
    """Bytes kept for backward: ``per_sample`` x batch + ``fixed`` (measured in fp32 on CPU)."""

    per_sample: float
    fixed: float
    batches: tuple[int, int]  # the two measured batch sizes

    def at(self, batch: int, mixed: bool = False) -> float:
        """Bytes at a per-device batch; halved under bf16/fp16 autocast (activations in 16 bits)."""
        return (self.per_sample * batch + self.fixed) * (0.5 if mixed else 1.0)


def saved_bytes(step: Callable[[], Any], model: torch.nn.Module) -> int:
    """Bytes of the distinct tensors autograd saves while ``step()`` runs, ``model``'s weights excluded."""
    weights = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if (
            storage.data_ptr() not in weights
        ):  # a weight saved for backward (or a view of one) is no activation
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(seen.values())


def measure(trainer: Any, batch: dict[str, Any], sizes: tuple[int, int] = (2, 4)) -> Activations:
    """Activation bytes of the trainer's model on the first ``sizes`` samples of a collated batch."""
    model = trainer.model
    model.train()
    if not hasattr(trainer, "current_gradient_accumulation_steps"):  # set by the training loop
        trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    counts = []
    for size in sizes:
        inputs = {k: (v[:size] if isinstance(v, torch.Tensor | list) else v) for k, v in batch.items()}
        counts.append(saved_bytes(lambda inputs=inputs: trainer.compute_loss(model, inputs), model))
    small, large = sizes
    per_sample = max(0.0, (counts[1] - counts[0]) / (large - small))
    return Activations(per_sample, max(0.0, counts[0] - per_sample * small), sizes)

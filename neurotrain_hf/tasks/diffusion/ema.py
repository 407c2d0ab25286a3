"""EMA of the UNet weights through diffusers' ``EMAModel``, stepped once per optimizer step.

The averaged weights live in ``DiffusionModel.ema_unet`` (frozen parameters of the trained module), so
they are in every checkpoint and restored on resume with the rest of the model; ``EMAModel`` updates
them in place. Its step count is taken from the trainer's ``global_step`` before each update, so the
decay after a resume continues exactly where the killed run was (diffusers #12689, #5783).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


class EmaCallback(TrainerCallback):
    """``on_step_end`` (after each optimizer step, never per micro-step): shadow <- shadow - (1 - d) *
    (shadow - weights), d from ``EMAModel.get_decay`` (warm-up 1 - (1 + step / inv_gamma) ** -power)."""

    def __init__(self, model: Any, decay: float, warmup: bool, inv_gamma: float, power: float) -> None:
        from diffusers.training_utils import EMAModel

        self.weights = [p for p in model.unet.parameters()]
        self.ema = EMAModel(
            self.weights, decay=decay, use_ema_warmup=warmup, inv_gamma=inv_gamma, power=power, foreach=True
        )
        self.ema.shadow_params = list(model.ema_unet.parameters())  # the frozen copy, updated in place

    def on_step_end(self, args, state, control, **kwargs):
        self.ema.optimization_step = state.global_step - 1  # step() adds one: the optimizer steps done
        self.ema.step(self.weights)

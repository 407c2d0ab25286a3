"""``DiffusionTrainer``: NeuroTrainer for DDPM training (``objective.py``), EMA (``ema.py``) and
sample-based evaluation (``inference.py``).

Training randomness (timesteps, noise, condition dropout) comes from a generator seeded by (seed,
optimizer step, micro-step, process), so a resumed run draws what the uninterrupted one would have.
Each evaluation writes a grid of its first samples (fixed noise) to ``samples/step-<N>.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...metrics.registry import StreamingMetrics
from ...trainer.neuro_trainer import NeuroTrainer
from .config import DiffusionConfig
from .ema import EmaCallback
from .inference import SamplingInference, save_grid
from .objective import diffusion_loss


class DiffusionTrainer(NeuroTrainer):
    """Per-sample min-SNR-weighted MSE; the EMA stepped per optimizer step; samples at evaluation."""

    def __init__(
        self,
        model: torch.nn.Module,
        args: DiffusionConfig,
        *,
        inference: SamplingInference,
        callbacks: list | None = None,
        save_folder: Any = None,
        **kwargs: Any,
    ) -> None:
        callbacks = list(callbacks or [])
        if model.ema_unet is not None:
            callbacks.append(
                EmaCallback(model, args.ema_decay, args.ema_warmup, args.ema_inv_gamma, args.ema_power)
            )
        names = list(args.metrics or [])
        kwargs.setdefault("metrics", StreamingMetrics(names, args.metric_families) if names else None)
        self._core = model
        self.save_folder = save_folder  # (folder, model) -> writes the pipeline folder
        self._micro_step, self._step_seen = 0, -1
        super().__init__(model, args, inference=inference, callbacks=callbacks, **kwargs)

    def generator(self, device: torch.device) -> torch.Generator:
        """Training randomness of this micro-step on this process (see the module docstring)."""
        if self.state.global_step != self._step_seen:
            self._micro_step, self._step_seen = 0, self.state.global_step
        self._micro_step += 1
        seed = hash((self.args.seed, self.state.global_step, self._micro_step, self.args.process_index))
        return torch.Generator(device=device).manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)

    def count_items(self, inputs: dict[str, Any]) -> int:
        return int(inputs["pixel_values"].shape[0])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        core = self._core  # the module inside any DDP / DeepSpeed wrapper (unwrapping walks it every step)
        args = self.args
        losses = diffusion_loss(
            _Forward(model, core),
            inputs,
            self.generator(inputs["pixel_values"].device),
            snr_gamma=args.snr_gamma,
            offset_noise=args.offset_noise,
            input_perturbation=args.input_perturbation,
            condition_dropout=args.condition_dropout if core.config.conditioning != "none" else 0.0,
        )
        if num_items_in_batch is not None:
            loss = losses.sum() / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
        else:
            loss = losses.mean()
        return (loss, {"losses": losses}) if return_outputs else loss

    def per_item_loss(self, outputs: Any, inputs: dict[str, Any], batch_size: int) -> torch.Tensor | None:
        return outputs.get("losses")

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        self.inference.keep_samples(self.args.grid_samples)
        output = super().evaluation_loop(
            dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
        )
        kept = self.inference.kept_samples()
        if kept is not None and self.is_world_process_zero() and metric_key_prefix == "eval":
            save_grid(kept, Path(self.args.output_dir) / "samples" / f"step-{self.state.global_step}.png")
        return output

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Checkpoints: the module's weights (UNet and EMA). The final model folder (``runner.save_model``
        calls this): a diffusers pipeline with the EMA weights (``pipeline.save_pipeline``)."""
        if _internal_call or self.save_folder is None:
            return super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            folder = Path(output_dir or self.args.output_dir)
            folder.mkdir(parents=True, exist_ok=True)
            self.save_folder(folder, self.accelerator.unwrap_model(self.model))
        self.accelerator.wait_for_everyone()


class _Forward:
    """The trained module's forward (through DDP when wrapped) with the attributes the objective reads."""

    def __init__(self, wrapped: torch.nn.Module, core: torch.nn.Module) -> None:
        self.wrapped, self.noise_scheduler, self.null_class, self.config = (
            wrapped,
            core.noise_scheduler,
            core.null_class,
            core.config,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.wrapped(*args, **kwargs)

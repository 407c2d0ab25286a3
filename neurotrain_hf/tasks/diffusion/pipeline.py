"""Sampling and the saved pipeline folder.

``generate`` is the one sampling loop (evaluation, the Tester, the Predictor and
``NeuroDiffusionPipeline`` all call it); for an unconditional model it is exactly ``DDPMPipeline``'s
loop (same noise draws, same scheduler steps), so a saved folder gives the same images through
``DDPMPipeline`` / ``DDIMPipeline`` as through ``neurotrain predict``. Class- and mask-conditioned models
load with ``NeuroDiffusionPipeline`` (exported by ``neurotrain_hf``; no remote code).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    ImagePipelineOutput,
)
from diffusers.utils.torch_utils import randn_tensor

from ...errors import NeuroTrainError

SCHEDULERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler}
RAW_DIR = "unet_raw"  # the non-EMA weights, beside the EMA ones in unet/


def sampling_scheduler(training_scheduler: Any, sampler: str) -> Any:
    """The sampler's scheduler built from the training schedule (betas, prediction type)."""
    if sampler == "dpm++":
        return DPMSolverMultistepScheduler.from_config(
            training_scheduler.config, algorithm_type="dpmsolver++", solver_order=2
        )
    return SCHEDULERS[sampler].from_config(training_scheduler.config)


def mask_channels(unet: Any) -> int:
    """Channels of the conditioning mask: input channels beyond the generated ones."""
    return int(unet.config.in_channels) - int(unet.config.out_channels)


@torch.no_grad()
def generate(
    unet: Any,
    scheduler: Any,
    batch_size: int,
    *,
    class_labels: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    num_inference_steps: int = 50,
    generator: torch.Generator | list[torch.Generator] | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] from noise. ``class_labels`` / ``mask``: the condition; with
    ``guidance_scale`` != 1 classifier-free guidance against the null condition (the class id one past
    the real ones; an all-zero mask)."""
    device = device or unet.device
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    shape = (batch_size, unet.config.out_channels, *size)
    image = randn_tensor(shape, generator=generator, device=device, dtype=unet.dtype)
    guided = guidance_scale != 1.0 and (class_labels is not None or mask is not None)
    num_embeds = getattr(unet.config, "num_class_embeds", None)
    if class_labels is None and num_embeds:  # a class-conditioned model sampled without a class: the null one
        class_labels = torch.full((batch_size,), int(num_embeds) - 1, dtype=torch.long)
    if class_labels is not None:
        class_labels = class_labels.to(device)
        null = torch.full_like(class_labels, int(num_embeds) - 1)
        class_labels = torch.cat([class_labels, null]) if guided else class_labels
    if mask is None and mask_channels(unet):  # a mask-conditioned model sampled without a mask: the null one
        mask = torch.zeros((batch_size, mask_channels(unet), *size), device=device)
    if mask is not None:
        mask = mask.to(device, unet.dtype)
        mask = torch.cat([mask, torch.zeros_like(mask)]) if guided else mask
    scheduler.set_timesteps(num_inference_steps)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(torch.cat([image, image]) if guided else image, t)
        if mask is not None:
            model_input = torch.cat([model_input, mask], dim=1)
        kwargs = {"class_labels": class_labels} if class_labels is not None else {}
        output = unet(model_input, t, **kwargs).sample
        if guided:
            conditional, unconditional = output.chunk(2)
            output = unconditional + guidance_scale * (conditional - unconditional)
        image = scheduler.step(output, t, image, generator=generator).prev_sample
    return (image / 2 + 0.5).clamp(0, 1)


class NeuroDiffusionPipeline(DiffusionPipeline):
    """A class- or mask-conditioned (or unconditional) DDPM pipeline: ``pipe(class_labels=[0, 1])``,
    ``pipe(mask=masks)`` (B, 1, H, W) in {0, 1}, ``guidance_scale``, any diffusers scheduler."""

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: Any, scheduler: Any) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        class_labels: list[int] | torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        guidance_scale: float = 1.0,
        num_inference_steps: int = 50,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        if class_labels is not None:
            class_labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
            batch_size = len(class_labels)
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.float32)
            mask = mask[:, None] if mask.dim() == 3 else mask
            batch_size = len(mask)
            mask = mask * 2 - 1  # {0, 1} -> {-1, 1}: zero is the null condition
        images = generate(
            self.unet,
            self.scheduler,
            batch_size,
            class_labels=class_labels,
            mask=mask,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            generator=generator,
            device=self._execution_device,
        )
        images = images.cpu().permute(0, 2, 3, 1).float().numpy()
        if output_type == "pil":
            images = self.numpy_to_pil(images)
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def save_pipeline(folder: Path, model: Any, config_json: dict[str, Any]) -> None:
    """The model folder: a diffusers pipeline (``model_index.json``, ``unet/`` with the EMA weights,
    ``scheduler/``: the run's sampler on the training schedule), the raw weights in ``unet_raw/`` and neurotrain's ``config.json`` (task, settings)."""
    from diffusers import DDPMPipeline

    unet = model.sampling_unet()
    unconditional = model.config.conditioning == "none"
    pipeline_class = DDPMPipeline if unconditional else NeuroDiffusionPipeline
    sampler = (getattr(model.config, "neurotrain_inference", None) or {}).get("sampler", "ddpm")
    scheduler = sampling_scheduler(
        model.noise_scheduler, sampler
    )  # the run's sampler: same images as predict
    pipeline_class(unet=unet, scheduler=scheduler).save_pretrained(str(folder), safe_serialization=True)
    if model.ema_unet is not None:
        model.unet.save_pretrained(str(folder / RAW_DIR), safe_serialization=True)
    (folder / "config.json").write_text(json.dumps(config_json, indent=2, sort_keys=True), encoding="utf-8")


def load_pipeline(folder: str | Path) -> Any:
    """A saved model folder as a pipeline (``DDPMPipeline`` loads unconditional ones too); one line when a
    component is missing."""
    folder = Path(folder)
    for part in ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json"):
        if not (folder / part).is_file():
            raise NeuroTrainError(f"{folder}: not a diffusion pipeline folder ({part} is missing)")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # one line per result on stderr, not a loading bar
    return NeuroDiffusionPipeline.from_pretrained(str(folder))

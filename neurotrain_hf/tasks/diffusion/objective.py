"""The DDPM training objective on a diffusers noise scheduler: targets per prediction type, min-SNR
weights, offset noise and input perturbation, and the condition dropout of classifier-free guidance.

Min-SNR (Hang et al. 2023) weighs each sample's MSE by min(SNR, g) / SNR for epsilon, min(SNR, g) /
(SNR + 1) for v and min(SNR, g) for the clean sample, where SNR(t) = alpha_bar_t / (1 - alpha_bar_t):
the three parameterisations then weigh the implied x0 error equally (the formula diffusers' examples
had wrong for v, PR #6307 / #9451).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """SNR(t) = alpha_bar_t / (1 - alpha_bar_t), float32 on the timesteps' device."""
    alpha_bar = alphas_cumprod.to(timesteps.device, torch.float32)[timesteps]
    return alpha_bar / (1.0 - alpha_bar)


def min_snr_weights(snr_values: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Per-sample loss weights of min-SNR-gamma for the model's parameterisation."""
    clipped = torch.clamp(snr_values, max=gamma)
    if prediction_type == "epsilon":
        return clipped / snr_values
    if prediction_type == "v_prediction":
        return clipped / (snr_values + 1.0)
    if prediction_type == "sample":
        return clipped
    raise ValueError(f"min-SNR: unsupported prediction_type {prediction_type!r}")


def training_target(
    scheduler: Any, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """What the model regresses: the noise, v = sqrt(a) eps - sqrt(1 - a) x0, or the clean sample."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(clean, noise, timesteps)
    if prediction_type == "sample":
        return clean
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def sample_noise(
    clean: torch.Tensor, generator: torch.Generator | None, offset_noise: float = 0.0
) -> torch.Tensor:
    """Gaussian noise like ``clean``; with ``offset_noise`` a per-(sample, channel) constant is added."""
    noise = torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
    if offset_noise > 0:
        shape = (*clean.shape[:2], *([1] * (clean.dim() - 2)))
        noise = noise + offset_noise * torch.randn(
            shape, generator=generator, device=clean.device, dtype=clean.dtype
        )
    return noise


def drop_conditions(
    class_labels: torch.Tensor | None,
    mask: torch.Tensor | None,
    probability: float,
    null_class: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Classifier-free guidance training: each sample's condition is replaced by the null one (the extra
    class id; an all-zero mask) with ``probability``."""
    reference = class_labels if class_labels is not None else mask
    if reference is None or probability <= 0:
        return class_labels, mask
    drop = torch.rand(reference.shape[0], generator=generator, device=reference.device) < probability
    if class_labels is not None:
        class_labels = torch.where(drop, torch.full_like(class_labels, null_class), class_labels)
    if mask is not None:
        mask = torch.where(drop.view(-1, *([1] * (mask.dim() - 1))), torch.zeros_like(mask), mask)
    return class_labels, mask


def diffusion_loss(
    model: Any,
    batch: dict[str, torch.Tensor],
    generator: torch.Generator | None,
    *,
    snr_gamma: float | None = None,
    offset_noise: float = 0.0,
    input_perturbation: float = 0.0,
    condition_dropout: float = 0.0,
) -> torch.Tensor:
    """Per-sample (B,) training losses of a ``DiffusionModel`` on a batch, all randomness from ``generator``
    (timesteps, noise, condition dropout), so evaluation with a fixed generator is repeatable."""
    scheduler = model.noise_scheduler
    clean = batch["pixel_values"]
    n = clean.shape[0]
    noise = sample_noise(clean, generator, offset_noise)
    steps = scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (n,), generator=generator, device=clean.device).long()
    noised_with = noise
    if input_perturbation > 0:
        noised_with = noise + input_perturbation * torch.randn(
            clean.shape, generator=generator, device=clean.device, dtype=clean.dtype
        )
    noisy = scheduler.add_noise(clean, noised_with, timesteps)
    class_labels, mask = drop_conditions(
        batch.get("class_labels"), batch.get("mask"), condition_dropout, model.null_class, generator
    )
    prediction = model(noisy, timesteps, class_labels=class_labels, mask=mask)
    prediction_type = scheduler.config.prediction_type
    target = training_target(scheduler, clean, noise, timesteps, prediction_type)
    losses = F.mse_loss(prediction.float(), target.float(), reduction="none").flatten(1).mean(1)
    if snr_gamma is not None:
        losses = losses * min_snr_weights(
            snr(scheduler.alphas_cumprod, timesteps), snr_gamma, prediction_type
        )
    return losses

"""Denoising networks (diffusers ``UNet2DModel`` sized by config) and ``DiffusionModel``, the module the
trainer trains: the UNet, its EMA copy and the DDPM noise scheduler.

The EMA copy is a frozen submodule, so it is part of every checkpoint's weights and restored on resume
bit for bit (diffusers #12689), and it is what samples and the saved pipeline use.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig

from ...errors import ConfigError
from ...models.registry import ModelRequest, register_model

UNET_KEYS = {
    "block_out_channels",
    "layers_per_block",
    "attention_levels",
    "attention_head_dim",
    "norm_num_groups",
    "dropout",
    "class_embed_type",
}


@register_model("unet2d")
def unet2d(request: ModelRequest, **kwargs: Any) -> nn.Module:
    """A diffusers ``UNet2DModel`` from a config (random init). ``[model] kwargs``: block_out_channels
    (default [32, 64, 64]), layers_per_block (1), attention_levels (indices of levels with self-attention,
    default: the lowest resolution), attention_head_dim, norm_num_groups, dropout; sample_size and
    out_channels are set by the task. ``num_labels``: class embeddings (classes + the null class)."""
    from diffusers import UNet2DModel

    if request.pretrained:
        raise ConfigError("[model] unet2d is built from a config; for pretrained weights use hf/<repo id>")
    sample_size = int(kwargs.pop("sample_size", 32))
    out_channels = int(kwargs.pop("out_channels", request.in_channels))
    unknown = sorted(set(kwargs) - UNET_KEYS)
    if unknown:
        raise ConfigError(
            f"[model] unet2d: unknown kwargs {unknown}; allowed: {', '.join(sorted(UNET_KEYS))}"
        )
    channels = tuple(int(c) for c in kwargs.pop("block_out_channels", (32, 64, 64)))
    levels = set(kwargs.pop("attention_levels", [len(channels) - 1]))
    down = tuple("AttnDownBlock2D" if i in levels else "DownBlock2D" for i in range(len(channels)))
    up = tuple("AttnUpBlock2D" if i in levels else "UpBlock2D" for i in reversed(range(len(channels))))
    groups = int(kwargs.pop("norm_num_groups", min(32, channels[0])))
    if any(c % groups for c in channels):
        raise ConfigError(
            f"[model] unet2d: block_out_channels {list(channels)} must be multiples of norm_num_groups {groups}"
        )
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=request.in_channels,
        out_channels=out_channels,
        block_out_channels=channels,
        down_block_types=down,
        up_block_types=up,
        layers_per_block=int(kwargs.pop("layers_per_block", 1)),
        norm_num_groups=groups,
        attention_head_dim=kwargs.pop("attention_head_dim", 8),
        dropout=float(kwargs.pop("dropout", 0.0)),
        num_class_embeds=request.num_labels,
        class_embed_type=kwargs.pop("class_embed_type", None),
    )


def require_diffusers() -> None:
    """One line instead of an ImportError when the optional ``diffusers`` is not installed."""
    import importlib.util

    if importlib.util.find_spec("diffusers") is None:
        raise ConfigError("the diffusion task needs diffusers: pip install 'neurotrain-hf[diffusion]'")


class DiffusionModelConfig(PretrainedConfig):
    """What a trained diffusion model generates: image size and channels, its conditioning (class names,
    mask channels) and the denoiser class; saved as the pipeline folder's ``config.json``."""

    model_type = "neurotrain_diffusion"

    def __init__(
        self,
        conditioning: str = "none",
        class_names: list[str] | None = None,
        mask_channels: int = 0,
        image_size: int = 32,
        channels: int = 3,
        **kwargs: Any,
    ) -> None:
        self.conditioning = conditioning
        self.class_names = list(class_names or [])
        self.mask_channels = int(mask_channels)
        self.image_size = int(image_size)
        self.channels = int(channels)
        super().__init__(**kwargs)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def denoise(
    unet: nn.Module, sample: torch.Tensor, timesteps: Any, class_labels: torch.Tensor | None
) -> torch.Tensor:
    """One denoiser call -> the prediction tensor (diffusers UNets; class ids only when it embeds them)."""
    kwargs = {"class_labels": class_labels} if class_labels is not None else {}
    out = unet(sample, timesteps, **kwargs)
    return out.sample if hasattr(out, "sample") else out


class DiffusionModel(nn.Module):
    """The UNet being trained, its EMA copy (when ``ema``) and the training noise scheduler."""

    def __init__(
        self, config: DiffusionModelConfig, unet: nn.Module, noise_scheduler: Any, ema: bool = True
    ) -> None:
        super().__init__()
        self.config = config
        self.unet = unet
        self.noise_scheduler = noise_scheduler
        self.ema_unet = copy.deepcopy(unet).requires_grad_(False) if ema else None

    @property
    def null_class(self) -> int:
        """The class id of the unconditional (null) embedding: one past the real classes."""
        return self.config.num_classes

    def sampling_unet(self) -> nn.Module:
        """The weights samples and the saved pipeline use: the EMA when kept."""
        return self.ema_unet if self.ema_unet is not None else self.unet

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        use_ema: bool = False,
    ) -> torch.Tensor:
        """The denoiser's prediction for noisy images at ``timesteps`` (mask concatenated as channels)."""
        unet = self.sampling_unet() if use_ema else self.unet
        if self.config.mask_channels:
            if mask is None:  # the null condition
                mask = noisy.new_zeros((noisy.shape[0], self.config.mask_channels, *noisy.shape[2:]))
            noisy = torch.cat([noisy, mask.to(noisy.dtype)], dim=1)
        return denoise(unet, noisy, timesteps, class_labels if self.config.num_classes else None)

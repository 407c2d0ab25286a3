"""Our U-Net as a ``PreTrainedModel`` (2D and 3D), registered with ``AutoModelForSemanticSegmentation``.

Encoder of ``depth`` levels (two conv-norm-ReLU per level, max-pooling between), a mirrored decoder
with transposed-convolution upsampling and skip concatenation, a 1x1 head: one channel for a binary
sigmoid head (``binary_head``: the foreground logit), else one softmax channel per label. With deep supervision the
training output also carries one logit map per decoder level (upsampled) in ``hidden_states``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SemanticSegmenterOutput

from ...errors import ConfigError
from ...models.registry import ModelRequest, register_model

NORMS = ("batch", "instance", "group", "none")


def dense_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """The loss a segmentation model returns to Auto-class users: BCE for 1-channel heads, else CE.

    neurotrain's trainers use their own registry losses instead.
    """
    if labels is None:
        return None
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    return F.cross_entropy(logits, labels.long())


def segmentation_labels(request: ModelRequest) -> dict:
    """Label kwargs of a segmentation model config. A one-channel (binary sigmoid) head still names two
    labels, background and foreground (so ``transformers.pipeline`` names both masks), with
    ``binary_head = True``: its logit is the foreground's."""
    if request.num_labels != 1:
        return request.label_maps()
    names = {0: "background", 1: request.id2label.get(0, "foreground")}
    return {"id2label": names, "label2id": {v: k for k, v in names.items()}, "binary_head": True}


def head_channels(config: PretrainedConfig) -> int:
    """Output channels of a segmentation model: 1 for a binary head, else one per label."""
    return 1 if getattr(config, "binary_head", False) else int(config.num_labels)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad the spatial dims of (B, C, *spatial) at their end to a multiple of ``multiple``; returns the
    padded tensor and the index that crops an output of the padded size back. Our models pad themselves,
    so any input size works, in the Predictor and in ``transformers.pipeline`` alike."""
    size = x.shape[2:]
    pads = [(-s) % multiple for s in size]
    crop = (..., *[slice(0, s) for s in size])
    if not any(pads):
        return x, crop
    return F.pad(x, [p for pad in reversed(pads) for p in (0, pad)], mode="constant"), crop


class UNetConfig(PretrainedConfig):
    """Spatial dims, input channels, depth, base width, norm, dropout and deep supervision of ``UNet``."""

    model_type = "neurotrain_unet"

    def __init__(
        self,
        spatial_dims: int = 2,
        num_channels: int = 3,
        depth: int = 4,
        base_channels: int = 16,
        norm: str = "batch",
        dropout: float = 0.0,
        deep_supervision: bool = False,
        **kwargs,
    ) -> None:
        self.spatial_dims = int(spatial_dims)
        self.num_channels = int(num_channels)
        self.depth = int(depth)
        self.base_channels = int(base_channels)
        self.norm = norm
        self.dropout = float(dropout)
        self.deep_supervision = bool(deep_supervision)
        super().__init__(**kwargs)


def _norm(kind: str, channels: int, dims: int) -> nn.Module:
    if kind == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels)
    if kind == "instance":
        return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int, cfg: UNetConfig) -> None:
        conv = nn.Conv2d if cfg.spatial_dims == 2 else nn.Conv3d
        layers: list[nn.Module] = []
        for i in range(2):
            layers += [
                conv(cin if i == 0 else cout, cout, 3, padding=1, bias=cfg.norm == "none"),
                _norm(cfg.norm, cout, cfg.spatial_dims),
                nn.ReLU(),
            ]
        if cfg.dropout:
            layers.append((nn.Dropout2d if cfg.spatial_dims == 2 else nn.Dropout3d)(cfg.dropout))
        super().__init__(*layers)


class UNetForSemanticSegmentation(PreTrainedModel):
    """U-Net: ``pixel_values`` (B, C, *spatial) -> ``logits`` (B, num_labels, *spatial)."""

    config_class = UNetConfig
    main_input_name = "pixel_values"

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        if config.spatial_dims not in (2, 3) or config.norm not in NORMS or config.depth < 1:
            raise ConfigError(
                f"[model] unet: spatial_dims must be 2 or 3, norm one of {', '.join(NORMS)}, depth >= 1"
            )
        dims = config.spatial_dims
        widths = [config.base_channels * 2**i for i in range(config.depth)]
        self.down = nn.ModuleList()
        prev = config.num_channels
        for width in widths:
            self.down.append(_Block(prev, width, config))
            prev = width
        up_conv = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        head_conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        self.aux = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.up.append(up_conv(prev, width, 2, stride=2))
            self.merge.append(_Block(2 * width, width, config))
            if config.deep_supervision:
                self.aux.append(head_conv(width, head_channels(config), 1))
            prev = width
        self.head = head_conv(prev, head_channels(config), 1)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Keep PyTorch's default initialisation."""

    @property
    def size_multiple(self) -> int:
        """Spatial sizes must be multiples of this (the pooling factor)."""
        return 2 ** (self.config.depth - 1)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs):
        pool = F.max_pool2d if self.config.spatial_dims == 2 else F.max_pool3d
        x, crop = pad_to_multiple(pixel_values, self.size_multiple)
        skips = []
        for i, block in enumerate(self.down):
            x = block(pool(x, 2) if i else x)
            skips.append(x)
        aux = []
        for i, (up, merge) in enumerate(zip(self.up, self.merge)):
            x = merge(torch.cat([up(x), skips[-2 - i]], dim=1))
            if self.config.deep_supervision and self.training:
                aux.append(self.aux[i](x))
        logits = self.head(x)
        hidden = None
        if aux:  # coarsest first; upsampled to the output size
            size = logits.shape[2:]
            hidden = tuple(F.interpolate(a, size=size, mode="nearest")[crop] for a in aux)
        logits = logits[crop]
        return SemanticSegmenterOutput(loss=dense_loss(logits, labels), logits=logits, hidden_states=hidden)


@register_model("unet")
def unet(request: ModelRequest, **kwargs) -> UNetForSemanticSegmentation:
    """Our U-Net (``[model] kwargs``: spatial_dims, depth, base_channels, norm, dropout, deep_supervision)."""
    if request.pretrained:
        raise ConfigError("[model] unet has no pretrained weights; set [model] pretrained = false")
    config = UNetConfig(num_channels=request.in_channels, **segmentation_labels(request), **kwargs)
    return UNetForSemanticSegmentation(config)

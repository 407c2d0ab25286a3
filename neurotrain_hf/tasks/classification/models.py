"""The classification task's models: small networks of our own (the digits recipe's default), and the
timm / torchvision zoos (``zoo.py``), registered with the model registry and, with their image processor,
with ``AutoModelForImageClassification``, so a trained folder loads with the Auto classes (and
``pipeline("image-classification")``) after ``import neurotrain_hf``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

from ...data.processor import NeuroImageProcessor
from ...errors import ConfigError
from ...models.auto import register_auto_model
from ...models.registry import ModelRequest, register_model
from .zoo import TorchvisionClassifierConfig, TorchvisionForImageClassification


class SimpleCNNConfig(PretrainedConfig):
    """Conv-BN-ReLU widths, dropout and input channels of ``SimpleCNNForImageClassification``."""

    model_type = "neurotrain_simple_cnn"

    def __init__(
        self, channels: Sequence[int] = (32, 64, 128), dropout: float = 0.1, num_channels: int = 1, **kwargs
    ) -> None:
        self.channels = list(channels)
        self.dropout = float(dropout)
        self.num_channels = int(num_channels)
        super().__init__(**kwargs)


class MLPConfig(PretrainedConfig):
    """Hidden widths, dropout, input channels and (square) image size of ``MLPForImageClassification``."""

    model_type = "neurotrain_mlp"

    def __init__(
        self,
        hidden: Sequence[int] = (256,),
        dropout: float = 0.1,
        num_channels: int = 1,
        image_size: int = 8,
        **kwargs,
    ) -> None:
        self.hidden = list(hidden)
        self.dropout = float(dropout)
        self.num_channels = int(num_channels)
        self.image_size = int(image_size)
        super().__init__(**kwargs)


class _Classifier(PreTrainedModel):
    """Shared forward contract: ``pixel_values`` (+ optional ``labels``) -> ``ImageClassifierOutput``."""

    main_input_name = "pixel_values"

    def _init_weights(self, module: nn.Module) -> None:
        """Keep PyTorch's default initialisation (what the recipes are tuned for)."""

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs
    ) -> ImageClassifierOutput:
        logits = self.net(pixel_values)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


class SimpleCNNForImageClassification(_Classifier):
    """Conv-BN-ReLU blocks (max-pool between them), global average pooling, dropout, linear head."""

    config_class = SimpleCNNConfig

    def __init__(self, config: SimpleCNNConfig) -> None:
        super().__init__(config)
        layers: list[nn.Module] = []
        prev = config.num_channels
        for i, width in enumerate(config.channels):
            if i:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers += [nn.Conv2d(prev, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            prev = width
        layers += [
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(prev, config.num_labels),
        ]
        self.net = nn.Sequential(*layers)
        self.post_init()

    @property
    def head(self) -> nn.Module:
        """The final linear layer."""
        return self.net[-1]


class MLPForImageClassification(_Classifier):
    """Flatten + hidden layers: a baseline for tiny images."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        layers: list[nn.Module] = [nn.Flatten()]
        prev = config.num_channels * config.image_size**2
        for width in config.hidden:
            layers += [nn.Linear(prev, width), nn.ReLU(), nn.Dropout(config.dropout)]
            prev = width
        layers.append(nn.Linear(prev, config.num_labels))
        self.net = nn.Sequential(*layers)
        self.post_init()

    @property
    def head(self) -> nn.Module:
        return self.net[-1]


def _check(name: str, request: ModelRequest, kwargs: dict, config_class: type) -> None:
    """No pretrained weights; ``[model] kwargs`` must name constructor options (configs accept anything)."""
    if request.pretrained:
        raise ConfigError(f"[model] {name} has no pretrained weights; set [model] pretrained = false")
    allowed = [p for p in inspect.signature(config_class.__init__).parameters if p not in ("self", "kwargs")]
    unknown = sorted(set(kwargs) - set(allowed) - {"num_channels"})
    if unknown:
        raise ConfigError(f"[model] {name}: bad kwargs {unknown}; allowed: {', '.join(allowed)}")


@register_model("simple_cnn")
def simple_cnn(request: ModelRequest, **kwargs) -> SimpleCNNForImageClassification:
    _check("simple_cnn", request, kwargs, SimpleCNNConfig)
    config = SimpleCNNConfig(num_channels=request.in_channels, **request.label_maps(), **kwargs)
    return SimpleCNNForImageClassification(config)


@register_model("mlp")
def mlp(request: ModelRequest, **kwargs) -> MLPForImageClassification:
    _check("mlp", request, kwargs, MLPConfig)
    config = MLPConfig(num_channels=request.in_channels, **request.label_maps(), **kwargs)
    return MLPForImageClassification(config)


for _config, _model in (
    (SimpleCNNConfig, SimpleCNNForImageClassification),
    (MLPConfig, MLPForImageClassification),
    (TorchvisionClassifierConfig, TorchvisionForImageClassification),
):
    from transformers import AutoModelForImageClassification

    register_auto_model(AutoModelForImageClassification, _config, _model, NeuroImageProcessor)

"""Small CNNs of our own: fast on CPU, the default for the digits recipe."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import register_model


class SimpleCNN(nn.Module):
    """Conv-BN-ReLU blocks (max-pool between them), global average pooling, dropout, linear head."""

    def __init__(
        self,
        num_labels: int,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(channels):
            if i:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers += [
                nn.Conv2d(prev, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            prev = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(prev, num_labels)
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixel_values))


@register_model("simple_cnn")
def simple_cnn(num_labels: int, in_channels: int, pretrained: bool = False, **kwargs) -> nn.Module:
    if pretrained:
        raise ValueError("simple_cnn has no pretrained weights")
    return SimpleCNN(num_labels, in_channels, **kwargs)


class MLP(nn.Module):
    """Flatten + hidden layers: a baseline for tiny images."""

    def __init__(
        self, num_labels: int, in_features: int, hidden: Sequence[int] = (256,), dropout: float = 0.1
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            prev = width
        layers.append(nn.Linear(prev, num_labels))
        self.net = nn.Sequential(*layers)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)


@register_model("mlp")
def mlp(
    num_labels: int, in_channels: int, pretrained: bool = False, image_size: int = 8, **kwargs
) -> nn.Module:
    if pretrained:
        raise ValueError("mlp has no pretrained weights")
    return MLP(num_labels, in_channels * image_size * image_size, **kwargs)

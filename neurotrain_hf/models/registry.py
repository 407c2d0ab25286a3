"""Model registry and ``get_model``: our own models by name, plus ``timm/``, ``torchvision/`` and ``hf/`` prefixes.

Every builder takes ``(num_labels, in_channels, pretrained, **kwargs)`` and returns an ``nn.Module``
whose forward takes an image batch (``pixel_values``) and returns logits or a ModelOutput with ``.logits``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from torch import nn

from ..config.sections import ModelConfig
from ..errors import ConfigError
from ..registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")
register_model = MODELS.register


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.list(pattern)


def logits_of(output: Any):
    """Logits from a plain tensor, a ModelOutput (``.logits``) or a tuple."""
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)):
        return output[0]
    return output


def get_model(
    name: str | None = None,
    config: ModelConfig | dict | None = None,
    *,
    num_labels: int | None = None,
    in_channels: int | None = None,
) -> nn.Module:
    """Build a model by name with the options of a ``[model]`` section (or a dict of them).

    ``num_labels``/``in_channels`` fill what the config leaves unset (usually from the dataset).
    """
    options = asdict(config) if isinstance(config, ModelConfig) else dict(config or {})
    name = name or options.get("name") or ModelConfig.name
    kwargs = dict(options.get("kwargs") or {})
    labels = options.get("num_labels") or num_labels
    channels = options.get("in_channels") or in_channels or 3
    if labels is None:
        raise ConfigError(f"[model] {name}: num_labels is unknown; set [model] num_labels")
    builder = MODELS.get(name)
    extra = {"trust_remote_code": options["trust_remote_code"]} if options.get("trust_remote_code") else {}
    try:
        return builder(
            num_labels=labels,
            in_channels=channels,
            pretrained=bool(options.get("pretrained")),
            **extra,
            **kwargs,
        )
    except TypeError as exc:
        raise ConfigError(f"[model] {name}: bad kwargs {sorted(kwargs)}: {exc}") from None

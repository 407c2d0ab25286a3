"""Resolvers for external model zoos: ``timm/<name>``, ``torchvision/<name>``, ``hf/<id-or-model-type>``."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .registry import MODELS


@MODELS.register_prefix("timm")
def timm_model(arch: str):
    def build(num_labels: int, in_channels: int, pretrained: bool = False, **kwargs) -> nn.Module:
        import timm

        if not timm.is_model(arch):
            raise ConfigError(f"[model] timm/{arch}: unknown timm model (see timm.list_models())")
        return timm.create_model(
            arch, pretrained=pretrained, num_classes=num_labels, in_chans=in_channels, **kwargs
        )

    return build


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels == in_channels:
                    return
                new = nn.Conv2d(
                    in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    child.groups,
                    child.bias is not None,
                )
                setattr(parent, child_name, new)
                return


def _replace_last_linear(model: nn.Module, num_labels: int) -> None:
    last = None
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                last = (parent, child_name, child)
    if last is None:
        raise ConfigError("[model] torchvision model has no linear classifier to resize")
    parent, child_name, child = last
    setattr(parent, child_name, nn.Linear(child.in_features, num_labels))


@MODELS.register_prefix("torchvision")
def torchvision_model(arch: str):
    def build(num_labels: int, in_channels: int, pretrained: bool = False, **kwargs) -> nn.Module:
        import torchvision

        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise ConfigError(f"[model] torchvision/{arch}: unknown torchvision classification model")
        if pretrained:
            model = torchvision.models.get_model(arch, weights="DEFAULT", **kwargs)
            _replace_last_linear(model, num_labels)
        else:
            model = torchvision.models.get_model(arch, weights=None, num_classes=num_labels, **kwargs)
        _replace_first_conv(model, in_channels)
        return model

    return build


@MODELS.register_prefix("hf")
def hf_model(model_id: str):
    """``hf/<hub-id-or-path>`` (config from the Hub or a folder) or ``hf/<model_type>`` (e.g. ``hf/vit``)."""

    def build(
        num_labels: int, in_channels: int, pretrained: bool = False, trust_remote_code: bool = False, **kwargs
    ) -> nn.Module:
        from transformers import CONFIG_MAPPING, AutoConfig, AutoModelForImageClassification

        if pretrained:
            return AutoModelForImageClassification.from_pretrained(
                model_id,
                num_labels=num_labels,
                ignore_mismatched_sizes=True,
                trust_remote_code=trust_remote_code,
                num_channels=in_channels,
                **kwargs,
            )
        if model_id in CONFIG_MAPPING:
            config = AutoConfig.for_model(model_id, num_labels=num_labels, num_channels=in_channels, **kwargs)
        else:
            config = AutoConfig.from_pretrained(
                model_id,
                num_labels=num_labels,
                num_channels=in_channels,
                trust_remote_code=trust_remote_code,
                **kwargs,
            )
        return AutoModelForImageClassification.from_config(config, trust_remote_code=trust_remote_code)

    return build

"""Classifiers from the model zoos: ``timm/<name>`` (transformers' ``TimmWrapperForImageClassification``) and
``torchvision/<name>`` (a thin ``PreTrainedModel``). A pretrained stem meeting another channel count is
adapted the way timm does it (``timm.models.adapt_input_conv``)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

from ...errors import ConfigError
from ...models.registry import MODELS, ModelRequest


@MODELS.register_prefix("timm")
def timm_model(arch: str):
    def build(request: ModelRequest, **kwargs):
        import timm
        from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

        if not timm.is_model(arch):
            raise ConfigError(f"[model] timm/{arch}: unknown timm model (see timm.list_models())")
        model_args = {"in_chans": request.in_channels, **kwargs}
        config = TimmWrapperConfig(
            architecture=arch, model_args=model_args, do_pooling=True, **request.label_maps()
        )
        model = TimmWrapperForImageClassification(config)
        if request.pretrained:  # timm loads and adapts the stem (in_chans) itself
            source = timm.create_model(arch, pretrained=True, num_classes=request.num_labels, **model_args)
            model.timm_model.load_state_dict(source.state_dict())
        return model

    return build


class TorchvisionClassifierConfig(PretrainedConfig):
    """A torchvision classification architecture by name, with its input channels."""

    model_type = "neurotrain_torchvision"

    def __init__(
        self, architecture: str = "resnet18", num_channels: int = 3, model_args: dict | None = None, **kwargs
    ) -> None:
        self.architecture = architecture
        self.num_channels = int(num_channels)
        self.model_args = dict(model_args or {})
        super().__init__(**kwargs)


def _first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d] | None:
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                return parent, child_name, child
    return None


def adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Give the first convolution ``in_channels`` inputs, adapting its weights as timm does."""
    from timm.models import adapt_input_conv

    found = _first_conv(model)
    if found is None or found[2].in_channels == in_channels:
        return
    parent, name, conv = found
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(adapt_input_conv(in_channels, conv.weight))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    setattr(parent, name, new)


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


class TorchvisionForImageClassification(PreTrainedModel):
    """A torchvision classifier inside a ``PreTrainedModel`` (weights under ``model.``)."""

    config_class = TorchvisionClassifierConfig
    main_input_name = "pixel_values"

    def __init__(self, config: TorchvisionClassifierConfig, weights: str | None = None) -> None:
        import torchvision

        super().__init__(config)
        if weights:
            self.model = torchvision.models.get_model(
                config.architecture, weights=weights, **config.model_args
            )
            _replace_last_linear(self.model, config.num_labels)
        else:
            self.model = torchvision.models.get_model(
                config.architecture, weights=None, num_classes=config.num_labels, **config.model_args
            )
        adapt_first_conv(self.model, config.num_channels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """torchvision initialises its own modules."""

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs):
        logits = self.model(pixel_values)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


@MODELS.register_prefix("torchvision")
def torchvision_model(arch: str):
    def build(request: ModelRequest, **kwargs):
        import torchvision

        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise ConfigError(f"[model] torchvision/{arch}: unknown torchvision classification model")
        config = TorchvisionClassifierConfig(
            architecture=arch, num_channels=request.in_channels, model_args=kwargs, **request.label_maps()
        )
        return TorchvisionForImageClassification(config, weights="DEFAULT" if request.pretrained else None)

    return build

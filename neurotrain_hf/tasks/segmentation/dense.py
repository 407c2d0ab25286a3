"""Dense-prediction zoos as ``PreTrainedModel``s: ``monai/<Network>`` and ``smp/<Architecture>:<encoder>``.

Thin wrappers: the network is built by its library under ``self.net`` (which also initialises it) and
the wrapper only turns its output into a ``SemanticSegmenterOutput``. Both save as folders that
``AutoModelForSemanticSegmentation.from_pretrained`` loads after ``import neurotrain_hf`` (no remote
code): the config records the network and its ``[model] kwargs`` (JSON values), the weights go to
``model.safetensors``. A binary head (``binary_head``) has one sigmoid channel, else one softmax channel per label.

* ``monai/<Network>``: any class of ``monai.networks.nets`` taking ``spatial_dims``, ``in_channels`` and
  ``out_channels`` (UNet, AttentionUnet, SegResNet, DynUNet, UNETR, SwinUNETR, BasicUNet, ...), 2D by
  default (``[model] kwargs`` ``spatial_dims = 3`` for volumes). Deep-supervision outputs (DynUNet's
  stacked tensor, lists) give the main map as ``logits`` and the others, upsampled to the output size
  and coarsest first, as ``hidden_states``.
* ``smp/<Architecture>:<encoder>`` (e.g. ``smp/Unet:resnet34``, ``smp/FPN:tu-resnet18`` for a timm
  encoder; the encoder defaults to ``resnet34``): a ``segmentation_models_pytorch`` model, 2D only.
  Logits have the input size; ``forward`` pads inputs to multiples of ``size_multiple`` (the encoder's
  output stride, 32 for the default ``encoder_depth = 5``) and crops the logits back. ``[model] pretrained = true`` downloads ImageNet
  encoder weights when the model is built; a saved folder never downloads (its weights are in
  ``model.safetensors``).
"""

from __future__ import annotations

import inspect
import json
import re
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SemanticSegmenterOutput

from ...errors import ConfigError
from ...models.registry import MODELS, ModelRequest
from ...registry import did_you_mean
from .unet import dense_loss, head_channels, pad_to_multiple, segmentation_labels


def _json_kwargs(kwargs: dict | None, where: str) -> dict:
    """``kwargs`` as JSON values (tuples become lists), so a saved config rebuilds the same network."""
    try:
        return json.loads(json.dumps(dict(kwargs or {})))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"[model] {where}: kwargs must be JSON values (numbers, strings, lists): {exc}"
        ) from None


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can span several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DenseModel(PreTrainedModel):
    """Shared forward of the wrappers: ``self.net(pixel_values)`` -> ``SemanticSegmenterOutput``."""

    main_input_name = "pixel_values"
    net: nn.Module
    _shared: dict[str, str]

    def _init_weights(self, module: nn.Module) -> None:
        """The wrapped library initialises its own modules."""

    @property
    def size_multiple(self) -> int:
        """Input sizes are padded to multiples of this in ``forward`` (32 covers power-of-2 strides)."""
        return 32

    def _adopt(self, net: nn.Module) -> None:
        """Set ``self.net`` and make it save and load like a transformers model, then ``post_init``.

        Every buffer is made persistent (transformers' loader leaves non-persistent ones uninitialised);
        tensors the library registers under several names (DynUNet's skip layers) are declared tied,
        saved once and tied again on loading.
        """
        self.net = net
        for child in net.modules():
            child._non_persistent_buffers_set.clear()
        first: dict[int, str] = {}
        self._shared = {}
        named = [*self.named_parameters(remove_duplicate=False), *self.named_buffers(remove_duplicate=False)]
        for name, tensor in named:
            if id(tensor) in first:
                self._shared[name] = first[id(tensor)]
            first.setdefault(id(tensor), name)
        self._tied_weights_keys = {f"^{re.escape(k)}$": v for k, v in self._shared.items()}  # save patterns
        self.post_init()

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict[str, str]:
        """Alias -> first name of the tensors the wrapped library shares between submodules."""
        return dict(self._shared)

    def _split(self, output: Any, ndim: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Main logit map and auxiliary maps (finest first) from the network's raw output."""
        if isinstance(output, torch.Tensor) and output.ndim == ndim + 1:  # stacked deep supervision
            output = output.unbind(dim=1)
        if isinstance(output, (list, tuple)):
            return output[0], list(output[1:])
        return output, []

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Any
    ) -> SemanticSegmenterOutput:
        """``pixel_values`` (B, C, *spatial) -> ``logits`` (B, num_labels, *spatial); loss if ``labels``.
        Inputs are zero-padded to ``size_multiple`` and the logits cropped back (any size works)."""
        padded, crop = pad_to_multiple(pixel_values, self.size_multiple)
        logits, aux = self._split(self.net(padded), pixel_values.ndim)
        size = logits.shape[2:]
        hidden = tuple(
            (a if a.shape[2:] == size else F.interpolate(a, size=size))[crop] for a in reversed(aux)
        )
        logits = logits[crop]
        return SemanticSegmenterOutput(
            loss=dense_loss(logits, labels), logits=logits, hidden_states=hidden or None
        )


# --- MONAI -------------------------------------------------------------------------------------------
_MONAI_IO = ("spatial_dims", "in_channels", "out_channels")
_MONAI_MAIN_LAST = {"BasicUNetPlusPlus"}  # returns [aux..., main]


@lru_cache(maxsize=1)
def monai_networks() -> dict[str, type[nn.Module]]:
    """The ``monai.networks.nets`` classes taking ``spatial_dims``, ``in_channels`` and ``out_channels``."""
    import monai.networks.nets as nets

    found = {}
    for name in dir(nets):
        obj = getattr(nets, name)
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            try:
                params = inspect.signature(obj).parameters
            except (TypeError, ValueError):
                continue
            if all(p in params for p in _MONAI_IO):
                found[name] = obj
    return found


def monai_network(name: str) -> type[nn.Module]:
    """The MONAI network class called ``name``; a one-line error with a suggestion otherwise."""
    networks = monai_networks()
    if name not in networks:
        known = sorted({cls.__name__ for cls in networks.values()})  # without MONAI's aliases
        raise ConfigError(
            f"[model] monai/{name}: unknown MONAI network{did_you_mean(name, list(networks))}; "
            f"known: {', '.join(known)}"
        )
    return networks[name]


def monai_defaults(network: str, kwargs: dict) -> dict:
    """Fill the arguments MONAI requires for (Attention)UNet and DynUNet from the given ones or 4 levels."""
    kw = dict(kwargs)
    if network in ("UNet", "AttentionUnet"):
        levels = len(kw["channels"]) if "channels" in kw else len(kw.get("strides", [2] * 3)) + 1
        kw.setdefault("channels", [16 * 2**i for i in range(levels)])
        kw.setdefault("strides", [2] * (levels - 1))
    elif network == "DynUNet":
        levels = next((len(kw[k]) for k in ("kernel_size", "strides") if k in kw), 4)
        kw.setdefault("kernel_size", [3] * levels)
        kw.setdefault("strides", [1] + [2] * (levels - 1))
        kw.setdefault("upsample_kernel_size", list(kw["strides"])[1:])
    return kw


class MonaiSegmentationConfig(PretrainedConfig):
    """A ``monai.networks.nets`` class name, spatial dims, input channels and the network's other kwargs."""

    model_type = "neurotrain_monai"

    def __init__(
        self,
        network: str = "UNet",
        spatial_dims: int = 2,
        num_channels: int = 3,
        network_kwargs: dict | None = None,
        **kwargs: Any,
    ) -> None:
        self.network = network
        self.spatial_dims = int(spatial_dims)
        self.num_channels = int(num_channels)
        self.network_kwargs = _json_kwargs(network_kwargs, f"monai/{network}")
        super().__init__(**kwargs)


class MonaiForSemanticSegmentation(DenseModel):
    """A MONAI network under ``self.net``: ``pixel_values`` (B, C, *spatial) -> ``logits`` (B, L, ...)."""

    config_class = MonaiSegmentationConfig

    def __init__(self, config: MonaiSegmentationConfig) -> None:
        super().__init__(config)
        cls = monai_network(config.network)
        kwargs = config.network_kwargs
        given = set(_MONAI_IO) | set(kwargs)
        missing = [
            p.name
            for p in inspect.signature(cls).parameters.values()
            if p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in given
        ]
        if missing:
            raise ConfigError(f"[model] monai/{config.network}: missing required [model] kwargs {missing}")
        try:
            net = cls(
                spatial_dims=config.spatial_dims,
                in_channels=config.num_channels,
                out_channels=head_channels(config),
                **kwargs,
            )
        except ImportError as exc:  # MONAI's optional dependencies (einops for UNETR/SwinUNETR)
            raise ConfigError(f"[model] monai/{config.network}: {_first_line(exc)}") from None
        except (TypeError, ValueError, KeyError, AssertionError) as exc:
            raise ConfigError(
                f"[model] monai/{config.network}: bad kwargs {kwargs} "
                f"(spatial_dims={config.spatial_dims}): {_first_line(exc)}"
            ) from None
        self._adopt(net)

    def _split(self, output: Any, ndim: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """As the base class, with the main map moved first for networks that return it last."""
        if isinstance(output, (list, tuple)) and type(self.net).__name__ in _MONAI_MAIN_LAST:
            output = [output[-1], *reversed(output[:-1])]
        return super()._split(output, ndim)


@MODELS.register_prefix("monai")
def monai_model(network: str):
    """``monai/<Network>``; ``[model] kwargs`` go to the network (``spatial_dims`` defaults to 2)."""

    def build(request: ModelRequest, **kwargs: Any) -> MonaiForSemanticSegmentation:
        if request.pretrained:
            raise ConfigError(
                f"[model] monai/{network}: no pretrained weights; set [model] pretrained = false"
            )
        spatial_dims = kwargs.pop("spatial_dims", 2)
        config = MonaiSegmentationConfig(
            network=network,
            spatial_dims=spatial_dims,
            num_channels=request.in_channels,
            network_kwargs=monai_defaults(monai_network(network).__name__, kwargs),
            **segmentation_labels(request),
        )
        return MonaiForSemanticSegmentation(config)

    return build


# --- segmentation_models_pytorch --------------------------------------------------------------------
def check_smp_spec(architecture: str, encoder_name: str, kwargs: dict) -> None:
    """One-line errors for an unknown smp architecture, encoder (``tu-<name>``: a timm model) or kwarg."""
    import segmentation_models_pytorch as smp

    mapping = smp.MODEL_ARCHITECTURES_MAPPING
    archs = [cls.__name__ for cls in mapping.values()]
    if architecture.lower() not in mapping:
        raise ConfigError(
            f"[model] smp/{architecture}: unknown smp architecture{did_you_mean(architecture, archs)}; "
            f"known: {', '.join(archs)}"
        )
    if encoder_name.startswith("tu-"):
        import timm

        if not timm.is_model(encoder_name[3:]):
            raise ConfigError(
                f"[model] smp/{architecture}:{encoder_name}: unknown timm encoder (see timm.list_models())"
            )
        return
    encoders = smp.encoders.get_encoder_names()
    if encoder_name not in encoders:
        raise ConfigError(
            f"[model] smp/{architecture}:{encoder_name}: unknown smp encoder"
            f"{did_you_mean(encoder_name, encoders)}; or use tu-<timm model>"
        )
    # smp passes extra kwargs to timm encoders only and silently drops them for its own encoders
    unknown = sorted(set(kwargs) - set(inspect.signature(mapping[architecture.lower()]).parameters))
    if unknown:
        raise ConfigError(f"[model] smp/{architecture}:{encoder_name}: unknown kwargs {unknown}")


class SmpSegmentationConfig(PretrainedConfig):
    """An smp architecture, its encoder, input channels and the model's other kwargs."""

    model_type = "neurotrain_smp"

    def __init__(
        self,
        architecture: str = "Unet",
        encoder_name: str = "resnet34",
        num_channels: int = 3,
        model_kwargs: dict | None = None,
        **kwargs: Any,
    ) -> None:
        self.architecture = architecture
        self.encoder_name = encoder_name
        self.num_channels = int(num_channels)
        self.model_kwargs = _json_kwargs(model_kwargs, f"smp/{architecture}:{encoder_name}")
        super().__init__(**kwargs)


class SmpForSemanticSegmentation(DenseModel):
    """An smp model (``self.net``): ``pixel_values`` (B, C, H, W) -> ``logits`` (B, num_labels, H, W).

    ``encoder_weights`` (``"imagenet"``; ``True`` for ``tu-`` encoders) is only for building a new model;
    loading a saved folder builds with none and takes every weight from ``model.safetensors``.
    """

    config_class = SmpSegmentationConfig

    def __init__(self, config: SmpSegmentationConfig, encoder_weights: str | bool | None = None) -> None:
        import segmentation_models_pytorch as smp

        super().__init__(config)
        name = f"smp/{config.architecture}:{config.encoder_name}"
        check_smp_spec(config.architecture, config.encoder_name, config.model_kwargs)
        if "aux_params" in config.model_kwargs:
            raise ConfigError(f"[model] {name}: aux_params (a classification head) is not supported")
        try:
            net = smp.create_model(
                config.architecture,
                encoder_name=config.encoder_name,
                encoder_weights=encoder_weights,
                in_channels=config.num_channels,
                classes=head_channels(config),
                **config.model_kwargs,
            )
        except (TypeError, ValueError, KeyError, AssertionError) as exc:
            raise ConfigError(
                f"[model] {name}: bad kwargs {config.model_kwargs}: {_first_line(exc)}"
            ) from None
        self._adopt(net)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (the encoder's output stride)."""
        depth = int(self.config.model_kwargs.get("encoder_depth", 5))
        return int(getattr(self.net.encoder, "output_stride", 2**depth))


@MODELS.register_prefix("smp")
def smp_model(spec: str):
    """``smp/<Architecture>[:<encoder>]``; ``[model] kwargs`` go to ``segmentation_models_pytorch``."""
    architecture, _, encoder_name = spec.partition(":")

    def build(request: ModelRequest, **kwargs: Any) -> SmpForSemanticSegmentation:
        config = SmpSegmentationConfig(
            architecture=architecture,
            encoder_name=encoder_name or "resnet34",
            num_channels=request.in_channels,
            model_kwargs=kwargs,
            **segmentation_labels(request),
        )
        weights = None
        if request.pretrained:  # downloads the encoder's weights now (timm encoders take True)
            weights = True if config.encoder_name.startswith("tu-") else "imagenet"
        return SmpForSemanticSegmentation(config, encoder_weights=weights)

    return build

"""Object detectors as ``PreTrainedModel``s: torchvision detectors and tiny DETR-family models.

The data contract (every model): ``pixel_values`` (B, 3, S, S) already normalised and padded to a square
canvas, optional ``pixel_mask`` (B, S, S), and ``labels``: B dicts ``{"class_labels": (n,) 0-based,
"boxes": (n, 4) normalised cx, cy, w, h of the S x S canvas, optional "masks": (n, S, S) uint8}``.

* ``fasterrcnn`` / ``retinanet`` / ``fcos`` / ``maskrcnn``: ``TorchvisionForObjectDetection`` wraps the
  torchvision detector (random init, BatchNorm trained as torchvision does without weights). Its
  transform neither renormalises nor resizes. ``forward`` returns ``TorchvisionDetectionOutput``:
  ``loss`` and ``loss_dict`` (torchvision's names) when ``labels`` are given; ``detections`` in eval mode
  (B dicts: ``boxes`` (k, 4) absolute xyxy pixels of the canvas, ``scores``, ``labels`` 0-based and, for
  maskrcnn, ``masks`` (k, S, S) in [0, 1]). In eval mode with ``labels`` the loss is torchvision's
  training loss computed in a second pass with BatchNorm on running statistics and dropout off; the
  RPN / ROI proposal sampling of that pass is random, so eval losses vary slightly between calls.
  ``pixel_mask`` is accepted and ignored (torchvision has no padding mask).
* ``detr_tiny`` / ``conditional_detr_tiny`` / ``rtdetr_tiny``: the transformers classes themselves
  (``DetrForObjectDetection``, ``ConditionalDetrForObjectDetection``, ``RTDetrV2ForObjectDetection``) with
  small configs and a small random ResNet backbone; they take the contract as is, and their
  ``pred_boxes`` are normalised cxcywh of the canvas (post-process with the matching image processor's
  ``post_process_object_detection(outputs, threshold, target_sizes=[(S, S)] * B)``).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from ...errors import ConfigError, DataError
from ...models.registry import ModelRequest, register_model
from ...registry import did_you_mean

ARCHITECTURES = ("fasterrcnn", "retinanet", "fcos", "maskrcnn")
BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_large")
_TWO_STAGE = ("fasterrcnn", "maskrcnn")
# Feature strides: two-stage models use C2-C5 + max-pool (FPN 4..64), one-stage ones C3-C5 + P6/P7 (8..128).
STRIDES = {"two_stage": (4, 8, 16, 32, 64), "one_stage": (8, 16, 32, 64, 128)}


def default_anchor_sizes(architecture: str, image_size: int) -> list[list[float]]:
    """One tuple of anchor sizes per feature level, scaled to the canvas (torchvision's are for 800 px).

    Two-stage: S/16 .. S (8 .. 128 at S = 128); RetinaNet: the same with 3 octave scales per level;
    FCOS: the strides themselves (FCOS assigns objects to levels by anchor size = stride).
    """
    if architecture == "fcos":
        return [[float(s)] for s in STRIDES["one_stage"]]
    base = [image_size / 16 * 2**i for i in range(5)]
    if architecture == "retinanet":
        return [[round(b * 2 ** (k / 3), 2) for k in range(3)] for b in base]
    return [[round(b, 2)] for b in base]


class TorchvisionDetectorConfig(PretrainedConfig):
    """A torchvision detector: architecture, backbone, canvas size, anchors and post-processing."""

    model_type = "neurotrain_torchvision_detector"

    def __init__(
        self,
        architecture: str = "fasterrcnn",
        backbone: str = "resnet18",
        image_size: int = 128,
        trainable_backbone_layers: int | None = None,
        anchor_sizes: list | None = None,
        aspect_ratios: list | None = None,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
        rpn_post_nms_top_n: int = 300,
        box_batch_size_per_image: int = 128,
        representation_size: int = 1024,
        fpn_channels: int = 256,
        **kwargs: Any,
    ) -> None:
        self.architecture = architecture
        self.backbone = backbone
        self.image_size = int(image_size)
        self.trainable_backbone_layers = trainable_backbone_layers
        sizes = anchor_sizes or default_anchor_sizes(architecture, self.image_size)
        self.anchor_sizes = [[float(s) for s in level] for level in sizes]
        ratios = aspect_ratios or ([1.0] if architecture == "fcos" else [0.5, 1.0, 2.0])
        self.aspect_ratios = [float(r) for r in ratios]
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_detections = int(max_detections)
        # two-stage only; torchvision's 2000/1000 proposals and 512 sampled RoIs are sized for 800 px images
        self.rpn_post_nms_top_n = int(rpn_post_nms_top_n)
        self.box_batch_size_per_image = int(box_batch_size_per_image)
        self.representation_size = int(representation_size)
        self.fpn_channels = int(fpn_channels)  # torchvision's 256; fewer make RoIAlign and the heads cheaper
        super().__init__(**kwargs)


@dataclass
class TorchvisionDetectionOutput(ModelOutput):
    """``loss`` (sum of ``loss_dict``) when labels are given; ``detections`` in eval mode."""

    loss: torch.FloatTensor | None = None
    loss_dict: dict[str, torch.Tensor] | None = None
    detections: list[dict[str, torch.Tensor]] | None = None


def _check(config: TorchvisionDetectorConfig) -> None:
    where = f"[model] {config.architecture}"
    if config.architecture not in ARCHITECTURES:
        raise ConfigError(
            f"[model] architecture {config.architecture!r}: unknown"
            f"{did_you_mean(config.architecture, ARCHITECTURES)}; known: {', '.join(ARCHITECTURES)}"
        )
    if config.backbone not in BACKBONES:
        raise ConfigError(
            f"{where}: backbone {config.backbone!r} unknown{did_you_mean(config.backbone, BACKBONES)}; "
            f"known: {', '.join(BACKBONES)}"
        )
    if len(config.anchor_sizes) != 5:
        raise ConfigError(
            f"{where}: anchor_sizes needs 5 levels (one tuple per FPN level), got {config.anchor_sizes}"
        )
    top = 6 if config.backbone.startswith("mobilenet") else 5
    layers = config.trainable_backbone_layers
    if layers is not None and not 0 <= layers <= top:
        raise ConfigError(
            f"{where}: trainable_backbone_layers must be in 0..{top} for {config.backbone}, got {layers}"
        )


def _backbone(config: TorchvisionDetectorConfig) -> nn.Module:
    from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    one_stage = config.architecture not in _TWO_STAGE
    mobilenet = config.backbone.startswith("mobilenet")  # mobilenet_v3 has 6 stages, resnets 5
    layers = config.trainable_backbone_layers
    width = config.fpn_channels
    common = {
        "backbone_name": config.backbone,
        "weights": None,
        "norm_layer": nn.BatchNorm2d,  # torchvision's choice without pretrained weights
        "trainable_layers": (6 if mobilenet else 5) if layers is None else layers,
        "returned_layers": [2, 3, 4] if one_stage else [1, 2, 3, 4],
        **({"extra_blocks": LastLevelP6P7(width, width)} if one_stage else {}),
    }
    if mobilenet:
        if width != 256:
            raise ConfigError("[model] fpn_channels: mobilenet backbones have torchvision's 256 FPN channels")
        return mobilenet_backbone(fpn=True, **common)
    if width == 256:
        return resnet_fpn_backbone(**common)
    from torchvision.models import resnet
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    body = getattr(resnet, common["backbone_name"])(weights=None, norm_layer=nn.BatchNorm2d)
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][: common["trainable_layers"]]
    for name, parameter in body.named_parameters():
        if all(not name.startswith(layer) for layer in trainable):
            parameter.requires_grad_(False)
    stage = body.inplanes // 8  # channels of layer1 (64 for resnet18/34, 256 for resnet50)
    returned = common["returned_layers"]
    return BackboneWithFPN(
        body,
        {f"layer{k}": str(i) for i, k in enumerate(returned)},
        [stage * 2 ** (k - 1) for k in returned],
        width,
        extra_blocks=common.get("extra_blocks"),
    )


def build_torchvision_detector(config: TorchvisionDetectorConfig) -> nn.Module:
    """The torchvision detector of ``config`` (random init), its transform a no-op at the canvas size."""
    from torchvision.models import detection as tvd
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    _check(config)
    ratios = (tuple(config.aspect_ratios),) * len(config.anchor_sizes)
    anchors = AnchorGenerator(tuple(tuple(level) for level in config.anchor_sizes), ratios)
    size = config.image_size
    common = {
        "min_size": size,
        "max_size": size,
        "image_mean": [0.0, 0.0, 0.0],
        "image_std": [1.0, 1.0, 1.0],
    }
    post = {
        "score_thresh": config.score_threshold,
        "nms_thresh": config.nms_threshold,
        "detections_per_img": config.max_detections,
    }
    backbone = _backbone(config)
    if config.architecture in _TWO_STAGE:
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

        cls = tvd.MaskRCNN if config.architecture == "maskrcnn" else tvd.FasterRCNN
        rep = config.representation_size
        proposals = config.rpn_post_nms_top_n
        classes = config.num_labels + 1  # + background (index 0)
        if config.architecture == "maskrcnn":
            common["mask_predictor"] = MaskRCNNPredictor(256, 256, classes)  # torchvision's default head
            common["mask_head"] = MaskRCNNHeads(backbone.out_channels, (256, 256, 256, 256), 1)
        return cls(
            backbone,
            num_classes=None,
            rpn_anchor_generator=anchors,
            rpn_post_nms_top_n_train=proposals,
            rpn_post_nms_top_n_test=proposals,
            box_head=TwoMLPHead(backbone.out_channels * 7 * 7, rep),  # 7 x 7 RoIAlign, as torchvision
            box_predictor=FastRCNNPredictor(rep, classes),
            box_batch_size_per_image=config.box_batch_size_per_image,
            box_score_thresh=config.score_threshold,
            box_nms_thresh=config.nms_threshold,
            box_detections_per_img=config.max_detections,
            **common,
        )
    cls = tvd.RetinaNet if config.architecture == "retinanet" else tvd.FCOS
    return cls(backbone, num_classes=config.num_labels, anchor_generator=anchors, **post, **common)


class TorchvisionForObjectDetection(PreTrainedModel):
    """A torchvision detector under ``self.model``; see the module docstring for the forward contract."""

    config_class = TorchvisionDetectorConfig
    main_input_name = "pixel_values"

    def __init__(self, config: TorchvisionDetectorConfig) -> None:
        super().__init__(config)
        self.model = build_torchvision_detector(config)
        for module in self.model.modules():  # transformers' loader leaves non-persistent buffers unset
            module._non_persistent_buffers_set.clear()
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """torchvision initialises its own modules."""

    @property
    def label_offset(self) -> int:
        """Torchvision's class index of our class 0 (two-stage models reserve 0 for background)."""
        return 1 if self.config.architecture in _TWO_STAGE else 0

    def _targets(self, labels: list[dict], height: int, width: int) -> list[dict[str, torch.Tensor]]:
        """Contract labels -> torchvision targets (absolute xyxy boxes, shifted labels, uint8 masks)."""
        from torchvision.ops import box_convert

        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        targets = []
        for i, label in enumerate(labels):
            boxes = torch.as_tensor(label["boxes"], dtype=torch.float32).reshape(-1, 4)
            boxes = box_convert(boxes * scale.to(boxes.device), "cxcywh", "xyxy")
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
            classes = torch.as_tensor(label["class_labels"], dtype=torch.int64, device=boxes.device)
            target = {"boxes": boxes, "labels": classes.reshape(-1) + self.label_offset}
            if self.config.architecture == "maskrcnn":
                masks = label.get("masks")
                if masks is None:
                    if len(boxes):
                        raise DataError(f"maskrcnn: labels[{i}] has {len(boxes)} boxes but no 'masks'")
                    masks = torch.zeros(0, height, width)
                target["masks"] = torch.as_tensor(masks).to(device=boxes.device, dtype=torch.uint8)
            targets.append(target)
        return targets

    def _eval_losses(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
        """Torchvision's training losses with normalisation layers and dropout kept in eval mode."""
        modes = {module: module.training for module in self.model.modules()}
        self.model.train()
        for module in self.model.modules():
            if isinstance(module, (nn.modules.batchnorm._NormBase, nn.Dropout)):
                module.eval()
        try:
            return self.model(images, targets)
        finally:
            for module, mode in modes.items():
                module.training = mode

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: list[dict] | None = None,
        pixel_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> TorchvisionDetectionOutput:
        """See the module docstring. ``pixel_mask`` is ignored; training mode requires ``labels``."""
        height, width = pixel_values.shape[-2:]
        images = list(pixel_values)
        targets = self._targets(labels, height, width) if labels is not None else None
        if self.training:
            if targets is None:
                raise ValueError(f"{self.config.architecture}: training mode needs labels; call model.eval()")
            loss_dict = self.model(images, targets)
            return TorchvisionDetectionOutput(loss=sum(loss_dict.values()), loss_dict=loss_dict)
        detections = [self._detection(d) for d in self.model(images)]
        loss_dict = self._eval_losses(images, targets) if targets is not None else None
        loss = sum(loss_dict.values()) if loss_dict is not None else None
        return TorchvisionDetectionOutput(loss=loss, loss_dict=loss_dict, detections=detections)

    def _detection(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {"boxes": raw["boxes"], "scores": raw["scores"], "labels": raw["labels"] - self.label_offset}
        if "masks" in raw:
            out["masks"] = raw["masks"][:, 0]
        return out


def _torchvision_builder(architecture: str):
    def build(
        request: ModelRequest, backbone: str = "resnet18", image_size: int = 128, **kwargs: Any
    ) -> TorchvisionForObjectDetection:
        if request.pretrained:
            raise ConfigError(
                f"[model] {architecture}: pretrained torchvision detection weights are not supported "
                "(offline); set [model] pretrained = false"
            )
        if request.in_channels != 3:
            raise ConfigError(
                f"[model] {architecture}: needs 3-channel images, the data has {request.in_channels}"
            )
        known = set(inspect.signature(TorchvisionDetectorConfig).parameters) - {"kwargs", "architecture"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(
                f"[model] {architecture}: unknown kwargs {unknown}{did_you_mean(unknown[0], sorted(known))}"
            )
        config = TorchvisionDetectorConfig(
            architecture=architecture,
            backbone=backbone,
            image_size=image_size,
            **kwargs,
            **request.label_maps(),
        )
        return TorchvisionForObjectDetection(config)

    build.__name__ = f"build_{architecture}"
    return build


for _arch in ARCHITECTURES:
    register_model(_arch)(_torchvision_builder(_arch))


# --- tiny transformers DETR family -------------------------------------------------------------------
_TINY = {
    "d_model": 64,
    "encoder_layers": 1,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
    "num_queries": 20,
}
_TINY_RESNET = {
    "embedding_size": 16,
    "hidden_sizes": [16, 32, 64, 128],
    "depths": [1, 1, 1, 1],
    "layer_type": "basic",
}


def _config(name: str, config_class: type, request: ModelRequest, defaults: dict, kwargs: dict):
    """``config_class`` from the tiny defaults, the request's labels and ``[model] kwargs`` overrides."""
    if request.pretrained:
        raise ConfigError(f"[model] {name}: a tiny random-init model has no pretrained weights; use hf/<id>")
    fields = {f.name for f in dataclasses.fields(config_class)} | set(config_class.attribute_map)
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ConfigError(
            f"[model] {name}: unknown kwargs {unknown}{did_you_mean(unknown[0], sorted(fields))}"
        )
    return config_class(**{**defaults, **kwargs, "num_channels": request.in_channels, **request.label_maps()})


def _unfreeze_backbone(model: nn.Module) -> nn.Module:
    """DETR freezes its ResNet backbone (meant for pretrained weights); a random one must train.

    ``from_pretrained`` freezes it again: call ``model.model.unfreeze_backbone()`` to fine-tune a folder.
    """
    model.model.unfreeze_backbone()
    return model


@register_model("detr_tiny")
def detr_tiny(request: ModelRequest, **kwargs: Any):
    """A ~0.46M-parameter DETR (stride-32 ResNet features) for tests and small canvases."""
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    backbone = ResNetConfig(num_channels=request.in_channels, out_features=["stage4"], **_TINY_RESNET)
    defaults = {**_TINY, "backbone_config": backbone}
    return _unfreeze_backbone(
        DetrForObjectDetection(_config("detr_tiny", DetrConfig, request, defaults, kwargs))
    )


@register_model("conditional_detr_tiny")
def conditional_detr_tiny(request: ModelRequest, **kwargs: Any):
    """A ~0.5M-parameter Conditional DETR (sigmoid focal classification, faster convergence than DETR)."""
    from transformers import ConditionalDetrConfig, ConditionalDetrForObjectDetection, ResNetConfig

    backbone = ResNetConfig(num_channels=request.in_channels, out_features=["stage4"], **_TINY_RESNET)
    defaults = {**_TINY, "backbone_config": backbone}
    config = _config("conditional_detr_tiny", ConditionalDetrConfig, request, defaults, kwargs)
    return _unfreeze_backbone(ConditionalDetrForObjectDetection(config))


@register_model("rtdetr_tiny")
def rtdetr_tiny(request: ModelRequest, **kwargs: Any):
    """A ~1.2M-parameter RT-DETR v2 (3 feature levels, strides 8/16/32, denoising queries)."""
    from transformers import RTDetrResNetConfig, RTDetrV2Config, RTDetrV2ForObjectDetection

    backbone = RTDetrResNetConfig(num_channels=request.in_channels, out_indices=[2, 3, 4], **_TINY_RESNET)
    defaults = {
        **_TINY,
        "backbone_config": backbone,
        "encoder_in_channels": _TINY_RESNET["hidden_sizes"][1:],
        "encoder_hidden_dim": _TINY["d_model"],
        "decoder_in_channels": [_TINY["d_model"]] * 3,
        "num_denoising": 10,
        "freeze_backbone_batch_norms": False,  # random init: BatchNorm statistics must be learnt
    }
    return RTDetrV2ForObjectDetection(_config("rtdetr_tiny", RTDetrV2Config, request, defaults, kwargs))


def _register_auto() -> None:
    from transformers import AutoModelForObjectDetection

    from ...models.auto import register_auto_model, register_processor
    from .processor import NeuroDetectionProcessor

    register_auto_model(
        AutoModelForObjectDetection,
        TorchvisionDetectorConfig,
        TorchvisionForObjectDetection,
        NeuroDetectionProcessor,
    )
    register_processor(NeuroDetectionProcessor)


_register_auto()

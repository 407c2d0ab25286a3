"""CLIP-like models: built from a config (``clip``, ``clip_tiny``, ``siglip_tiny``) or loaded (``hf/<id-or-folder>``).

Any transformers model with a text and a vision tower and ``get_image_features``/``get_text_features``
(CLIPModel, SiglipModel, ...) trains here; built models take their vocabulary from the tokenizer trained
on the captions and their image size from the processor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ...errors import ConfigError
from ...registry import Registry
from .processor import BOS_ID, EOS_ID, PAD_ID

ClipBuilder = Callable[..., Any]
CLIP_MODELS: Registry[ClipBuilder] = Registry("CLIP model")
register_clip_model = CLIP_MODELS.register
MAX_IMAGE_TOKENS = 1024  # patches per image of a built model (ViT-L/14 at 448 px has 1,024)
DEFAULTS: dict[str, dict[str, Any]] = {}  # builder name -> its default kwargs (vision image/patch size)
TOWERS = {"image": ("vision_model", "visual_projection"), "text": ("text_model", "text_projection")}
TINY = {
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4},
    "vision": {
        "image_size": 32,
        "patch_size": 4,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
    },
    "projection_dim": 64,
}


def _merged(defaults: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in defaults.items()}
    for key, value in kwargs.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


def _text_config(text: dict[str, Any], vocab_size: int, max_length: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "max_position_embeddings": max_length,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        **text,
    }


def _clip(defaults: dict[str, Any]) -> ClipBuilder:
    def build(kwargs: dict[str, Any], vocab_size: int, image_size: int, max_length: int):
        from transformers import CLIPConfig, CLIPModel

        opts = _merged(defaults, kwargs)
        text, vision = opts.pop("text", {}), opts.pop("vision", {})
        config = CLIPConfig(
            text_config=_text_config(text, vocab_size, max_length),
            vision_config={"image_size": image_size, **vision},
            **opts,
        )
        return CLIPModel(config)

    return build


register_clip_model("clip")(_clip({}))
register_clip_model("clip_tiny")(_clip(TINY))
DEFAULTS.update(clip={}, clip_tiny=TINY, siglip_tiny=TINY)


def built_image_size(name: str, kwargs: dict[str, Any], resize: int | None) -> int:
    """The image size of a model built from a config: ``[augmentation] resize``, else the model's own
    (``[model] kwargs`` vision.image_size, else the builder's default: 32 for the tiny models, 224 for
    ``clip``). A size whose patch count would explode the vision tower's tokens is refused in one line."""
    vision = {**DEFAULTS.get(name, {}).get("vision", {}), **dict(kwargs.get("vision", {}))}
    size = int(resize or vision.get("image_size") or 224)
    patch = int(vision.get("patch_size") or 32)
    tokens = (size // patch) ** 2
    if tokens > MAX_IMAGE_TOKENS:
        raise ConfigError(
            f"[model] {name}: {size} px images in {patch} px patches make {tokens} tokens per image (at most "
            f"{MAX_IMAGE_TOKENS}); set [augmentation] resize (e.g. {patch * 16}) or a larger vision.patch_size"
        )
    return size


@register_clip_model("siglip_tiny")
def siglip_tiny(kwargs: dict[str, Any], vocab_size: int, image_size: int, max_length: int):
    """A small SiglipModel (pairwise sigmoid loss, learnable bias) on the same trained tokenizer."""
    from transformers import SiglipConfig, SiglipModel

    opts = _merged({k: v for k, v in TINY.items() if k != "projection_dim"}, kwargs)
    text, vision = opts.pop("text", {}), opts.pop("vision", {})
    config = SiglipConfig(
        text_config=_text_config(text, vocab_size, max_length),
        vision_config={"image_size": image_size, **vision},
        **opts,
    )
    return SiglipModel(config)


def is_clip_like(model: Any) -> bool:
    return all(hasattr(model, name) for name in ("get_image_features", "get_text_features", "logit_scale"))


def hub_config(model_id: str, trust_remote_code: bool = False) -> Any:
    """The config of ``hf/<model_id>``; refuses models without a text and a vision tower (one line)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"[model] hf/{model_id}: cannot load its config ({first})") from None
    if not (hasattr(config, "text_config") and hasattr(config, "vision_config")):
        raise ConfigError(
            f"[model] hf/{model_id}: not a CLIP-like model (model_type {config.model_type!r} has no text and "
            "vision towers); use a CLIPModel or SiglipModel id or folder"
        )
    return config


def load_hub_model(model_id: str, pretrained: bool, trust_remote_code: bool = False) -> Any:
    """``hf/<id-or-folder>`` through ``AutoModel``: its weights, or (pretrained = false) its architecture."""
    from transformers import AutoModel

    config = hub_config(model_id, trust_remote_code)
    remote = {"trust_remote_code": True} if trust_remote_code else {}
    model = (
        AutoModel.from_pretrained(model_id, **remote)
        if pretrained
        else AutoModel.from_config(config, **remote)
    )
    if not is_clip_like(model):
        raise ConfigError(
            f"[model] hf/{model_id}: {type(model).__name__} has no get_image_features/get_text_features/"
            "logit_scale; use a CLIPModel or SiglipModel"
        )
    return model


def build_clip_model(model_cfg, vocab_size: int, image_size: int, max_length: int) -> Any:
    """The ``[model]`` section's CLIP-like model."""
    name = model_cfg.name
    if name.startswith("hf/"):
        return load_hub_model(name[3:], model_cfg.pretrained, model_cfg.trust_remote_code)
    try:
        builder = CLIP_MODELS.get(name)
    except KeyError as exc:
        raise ConfigError(f"[model] name: {exc}") from None
    try:
        return builder(dict(model_cfg.kwargs), vocab_size, image_size, max_length)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[model] {name}: {exc}") from None


def freeze_tower(model: torch.nn.Module, which: str) -> int:
    """Freeze the image (LiT) or text tower in place; returns how many parameters were frozen."""
    if which == "none":
        return 0
    prefixes = TOWERS[which]
    frozen = 0
    for name, param in model.named_parameters():
        if any(part in prefixes for part in name.split(".")):
            param.requires_grad_(False)
            frozen += param.numel()
    if not frozen:
        raise ConfigError(f"[training] freeze = {which!r}: the model has no {'/'.join(prefixes)} parameters")
    return frozen

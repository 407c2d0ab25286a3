"""VLMs: ``llava_tiny`` built from configs (a small Llama-style language model and a CLIP vision tower,
optionally the vision tower of a CLIP run of this project), or ``hf/<id-or-folder>`` for any
``AutoModelForImageTextToText`` model (LLaVA 1.5, LLaVA-OneVision, Qwen2-VL, LLaVA-Med, a stage-1 run's
``model/``), optionally loaded in 4 or 8 bits through bitsandbytes (QLoRA).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ...errors import ConfigError
from ...registry import Registry
from .processor import BOS_ID, EOS_ID, IMAGE_ID, PAD_ID

VLMBuilder = Callable[..., Any]
VLM_MODELS: Registry[VLMBuilder] = Registry("VLM model")
register_vlm_model = VLM_MODELS.register
TINY = {
    "text": {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
    },
    "vision": {
        "image_size": 48,
        "patch_size": 24,  # one patch per quadrant of the embedded scenes
        "hidden_size": 192,
        "intermediate_size": 384,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
    },
}
PROJECTOR = "multi_modal_projector"
LANGUAGE_LINEAR = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def merged(kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """TINY with ``[model] kwargs`` (``text`` / ``vision`` tables) on top."""
    out = {k: dict(v) for k, v in TINY.items()}
    for key, value in kwargs.items():
        if key not in out or not isinstance(value, dict):
            raise ConfigError(
                f"[model] kwargs: unknown key {key!r} for llava_tiny (use `text` / `vision` tables)"
            )
        out[key].update(value)
    return out


def clip_folder(run: str | Path) -> Path:
    """A CLIP run's (or model folder's) model folder; one line when it is not a CLIP model."""
    folder = Path(run)
    if (folder / "model" / "config.json").is_file():
        folder = folder / "model"
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"[training] vision_tower {str(run)!r}: not a run or model folder (no config.json)")
    config = json.loads(path.read_text(encoding="utf-8"))
    if not config.get("vision_config"):
        raise ConfigError(f"[training] vision_tower {str(run)!r}: {path} has no vision tower (vision_config)")
    return folder


def vision_settings(kwargs: dict[str, Any], vision_tower: str | None) -> tuple[int, int]:
    """(image size, patch size) of the model llava_tiny will build."""
    if vision_tower:
        from transformers import AutoConfig

        vision = AutoConfig.from_pretrained(str(clip_folder(vision_tower))).vision_config
        return int(vision.image_size), int(vision.patch_size)
    vision = merged(kwargs)["vision"]
    return int(vision["image_size"]), int(vision["patch_size"])


@register_vlm_model("llava_tiny")
def llava_tiny(kwargs: dict[str, Any], vocab_size: int, vision_tower: str | None = None) -> Any:
    """A ``LlavaForConditionalGeneration`` from configs (random weights; the vision tower's from a CLIP
    run when given)."""
    from transformers import AutoModel, LlavaConfig, LlavaForConditionalGeneration

    opts = merged(kwargs)
    vision: dict[str, Any] = {"model_type": "clip_vision_model", **opts["vision"]}
    clip = None
    if vision_tower:
        clip = AutoModel.from_pretrained(str(clip_folder(vision_tower)))
        vision = clip.config.vision_config.to_dict()
    patches = (int(vision["image_size"]) // int(vision["patch_size"])) ** 2
    config = LlavaConfig(
        vision_config=vision,
        text_config={
            "model_type": "llama",
            "vocab_size": vocab_size,
            "bos_token_id": BOS_ID,
            "eos_token_id": EOS_ID,
            "pad_token_id": PAD_ID,
            **opts["text"],
        },
        image_token_index=IMAGE_ID,
        image_seq_length=patches,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        pad_token_id=PAD_ID,
    )
    model = LlavaForConditionalGeneration(config)
    if clip is not None:  # CLIPModel's vision_model.* are the tower's own keys
        prefix = "vision_model."
        weights = {k[len(prefix) :]: v for k, v in clip.state_dict().items() if k.startswith(prefix)}
        model.model.vision_tower.vision_model.load_state_dict(weights, strict=True)
    model.generation_config.pad_token_id = PAD_ID
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.bos_token_id = BOS_ID
    return model


def hub_model(repo: str, pretrained: bool, quantization: str, trust_remote_code: bool) -> Any:
    """An ``AutoModelForImageTextToText`` model from the Hub or a folder; a model of another kind is one line."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    try:
        config = AutoConfig.from_pretrained(repo, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"[model] hf/{repo}: cannot load its config ({first})") from None
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise ConfigError(
            f"[model] hf/{repo}: a {config.model_type!r} model is not an image-text-to-text model "
            "(AutoModelForImageTextToText cannot load it)"
        )
    if not pretrained:
        if quantization != "none":
            raise ConfigError("[training] quantization needs [model] pretrained = true (weights to quantize)")
        return AutoModelForImageTextToText.from_config(config, trust_remote_code=trust_remote_code)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if quantization != "none":
        kwargs["quantization_config"] = bnb_config(quantization)
    return AutoModelForImageTextToText.from_pretrained(repo, **kwargs)


def bnb_config(quantization: str) -> Any:
    """bitsandbytes 4-bit (NF4, double quantization, bf16 compute) or 8-bit; one line where it cannot run."""
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise ConfigError(
            f"[training] quantization = {quantization!r} needs bitsandbytes ({exc}); `pip install bitsandbytes`"
        ) from None
    if quantization == "8bit":
        return BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_skip_modules=["vision_tower", PROJECTOR, "lm_head"]
        )
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=["vision_tower", PROJECTOR, "lm_head"],
    )


def set_stage(model: torch.nn.Module, stage: str, train_vision_tower: bool) -> dict[str, int]:
    """Freeze per stage (before LoRA wraps the model): ``projector``: only the projector trains; ``lora`` and
    ``full``: the projector and the language model (LoRA then freezes the language model's base weights);
    the vision tower only with ``train_vision_tower``. Returns trainable / total parameter counts."""
    for name, param in model.named_parameters():
        if PROJECTOR in name:
            wanted = True
        elif "vision_tower" in name or "vision_model" in name or ".visual." in name:
            wanted = train_vision_tower
        else:
            wanted = stage != "projector"
        param.requires_grad_(wanted and param.is_floating_point())  # quantized weights never train
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": sum(p.numel() for p in model.parameters())}

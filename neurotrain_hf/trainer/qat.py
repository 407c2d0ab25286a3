"""Quantization-aware training (``[quantization] qat = true``): torchao fake-quantizes the linear layers'
weights while the model trains (``QATConfig`` prepare), and the trained model is converted to real
quantized weights before it is saved (convert), in the same form ``neurotrain quantize`` writes, so
``from_pretrained`` reloads it quantized and the run's test metrics are the quantized model's."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError


def _base_config(cfg: Any) -> Any:
    """The post-training config QAT simulates: int8 per output channel, or int4 in groups."""
    try:
        from torchao.quantization import IntxWeightOnlyConfig
        from torchao.quantization.granularity import PerAxis, PerGroup
    except ImportError as exc:
        raise ConfigError(f"[quantization] qat = true needs torchao ({exc}); `pip install torchao`") from None
    if cfg.method == "int8-weight":
        return IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))
    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(cfg.group_size))


def _linear(group: int | None):
    def accept(module: torch.nn.Module, fqn: str) -> bool:
        return isinstance(module, torch.nn.Linear) and (group is None or module.in_features % group == 0)

    return accept


def _group(cfg: Any) -> int | None:
    return cfg.group_size if cfg.method == "int4-weight" else None


def prepare_qat(model: torch.nn.Module, cfg: Any) -> int:
    """Swap the linear layers for fake-quantized ones (before the optimizer exists); returns how many."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    accept = _linear(_group(cfg))
    count = sum(accept(m, n) for n, m in model.named_modules())
    if not count:
        raise ConfigError(
            "[quantization] qat = true: the model has no linear layer to quantize"
            + (f" with in_features divisible by group_size {cfg.group_size}" if _group(cfg) else "")
        )
    quantize_(model, QATConfig(_base_config(cfg), step="prepare"), filter_fn=accept)
    return count


def convert_qat(model: torch.nn.Module, cfg: Any) -> None:
    """Fake-quantized layers -> real quantized weights, with transformers' ``TorchAoConfig`` attached so
    ``save_pretrained`` writes them (safetensors) and ``from_pretrained`` reloads them."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import FakeQuantizedLinear, QATConfig
    from transformers import TorchAoConfig
    from transformers.quantizers import AutoHfQuantizer

    base = _base_config(cfg)  # convert swaps the fake-quantized layers back and applies ``base`` to them
    quantize_(
        model, QATConfig(base, step="convert"), filter_fn=lambda m, _: isinstance(m, FakeQuantizedLinear)
    )
    ao = TorchAoConfig(base)
    model.config.quantization_config = ao
    model.hf_quantizer = AutoHfQuantizer.from_config(ao, pre_quantized=False)

"""A workaround for DeepSpeed 0.19: its weight broadcasts fail on 0-dim parameters.

DeepSpeed broadcasts ``p.data.view(torch.uint8)``, which torch refuses for a scalar (``self.dim() cannot
be 0 to view Float as Byte``); CLIP's ``logit_scale`` is one. Three places run into it: the engine's
initial broadcast (ZeRO-1/2), the conversion to ZeRO-3 parameters, and ``GatheredParameters`` with a
modifier rank (ZeRO-3 saving). Each is patched to broadcast a 1-element view of the same storage, so
the received value lands in the parameter and its shape (and the saved model's) stays 0-dim.
"""

from __future__ import annotations

import torch

_PATCHED = False


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1).view(torch.uint8) if tensor.dim() == 0 else tensor.view(torch.uint8)


def patch_scalar_broadcast() -> None:
    """Make DeepSpeed broadcast 0-dim parameters (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    from deepspeed import comm as dist
    from deepspeed.runtime.engine import DeepSpeedEngine
    from deepspeed.runtime.zero.partition_parameters import GatheredParameters, Init

    original = DeepSpeedEngine._broadcast_model

    def _broadcast_model(self) -> None:
        scalars = [p for p in self.module.parameters() if p.dim() == 0]
        for p in scalars:  # a view of the same storage: the broadcast value lands in the parameter
            p.data = p.data.reshape(1)
        try:
            original(self)
        finally:
            for p in scalars:
                p.data = p.data.reshape(())

    def _zero_init_param(self, param) -> None:  # Init._zero_init_param, with _bytes for the view
        self._convert_to_deepspeed_param(param)
        group = self.get_partition_dp_group(param)
        source = 0 if dist.get_world_group() == group else dist.get_global_rank(group, 0)
        dist.broadcast(_bytes(param.data), source, group)
        param.partition()

    original_exit = GatheredParameters._exit

    def _exit(self, *exc):  # the gathered scalars are re-partitioned right after: no shape to restore
        if self.enabled and self.src_rank is not None:
            for p in self.params:
                if p.data.dim() == 0:
                    p.data = p.data.reshape(1)
        return original_exit(self, *exc)

    DeepSpeedEngine._broadcast_model = _broadcast_model
    Init._zero_init_param = _zero_init_param
    GatheredParameters._exit = _exit
    _PATCHED = True

"""``hf/<id-or-model-type>``: any transformers model through the task's Auto class (every task's).

``hf/<hub-id-or-path>`` takes the config (and with ``pretrained`` the weights) from the Hub or a folder;
``hf/<model_type>`` (e.g. ``hf/vit``) builds the architecture from its default config. A pretrained
model meeting another channel count is refused with the ``[dataset] channels`` to set.
"""

from __future__ import annotations

from ..errors import ConfigError
from .registry import MODELS, ModelRequest


def _auto(name: str):
    import transformers

    return getattr(transformers, name)


@MODELS.register_prefix("hf")
def hf_model(model_id: str):
    """``hf/<hub-id-or-path>`` (config from the Hub or a folder) or ``hf/<model_type>`` (e.g. ``hf/vit``)."""

    def build(request: ModelRequest, **kwargs):
        from transformers import CONFIG_MAPPING, AutoConfig

        auto = _auto(request.auto_class)
        remote = {"trust_remote_code": True} if request.trust_remote_code else {}
        if model_id in CONFIG_MAPPING and not request.pretrained:
            config = AutoConfig.for_model(
                model_id, num_channels=request.in_channels, **request.label_maps(), **kwargs
            )
            return auto.from_config(config)
        config = AutoConfig.from_pretrained(model_id, **remote)
        channels = getattr(config, "num_channels", None)
        if request.pretrained and channels is not None and channels != request.in_channels:
            raise ConfigError(
                f"[model] hf/{model_id}: pretrained on {channels}-channel images but the data has "
                f"{request.in_channels}; set [dataset] channels = {channels} (images are converted)"
            )
        overrides = {"num_channels": request.in_channels} if channels is not None else {}
        if request.pretrained:
            return auto.from_pretrained(
                model_id,
                ignore_mismatched_sizes=True,
                **overrides,
                **request.label_maps(),
                **remote,
                **kwargs,
            )
        config = AutoConfig.from_pretrained(model_id, **overrides, **request.label_maps(), **remote, **kwargs)
        return auto.from_config(config, **remote)

    return build

"""Model registry and ``get_model``: our own models by name, plus ``timm/``, ``torchvision/`` and ``hf/`` prefixes.

A builder takes a ``ModelRequest`` (what the task and the data decide: labels, channels, pretrained,
the task's Auto class) plus the ``[model] kwargs`` and returns a ``transformers.PreTrainedModel``, so
every trained model saves as a folder the Auto classes load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config.sections import ModelConfig
from ..errors import ConfigError
from ..registry import Registry


@dataclass
class ModelRequest:
    """What a builder must produce: head size, input channels, weights and the task's Auto class."""

    num_labels: int | None  # None: the task has no label set (image-to-image, generation)
    in_channels: int = 3
    pretrained: bool = False
    auto_class: str = "AutoModel"
    id2label: dict[int, str] = field(default_factory=dict)
    trust_remote_code: bool = False
    name: str = ""  # the [model] name asked for (messages)

    def label_maps(self) -> dict[str, Any]:
        """``id2label``/``label2id`` config kwargs (names default to the index), for models with a label
        head; one line when the labels are unknown."""
        if self.num_labels is None:
            raise ConfigError(f"[model] {self.name}: num_labels is unknown; set [model] num_labels")
        id2label = {i: self.id2label.get(i, str(i)) for i in range(self.num_labels)}
        return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


ModelBuilder = Callable[..., Any]
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
    label_names: list[str] | None = None,
    auto_class: str = "AutoModel",
) -> Any:
    """Build a model by name with the options of a ``[model]`` section (or a dict of them).

    ``num_labels``/``in_channels``/``label_names`` fill what the config leaves unset (usually from the
    dataset); ``auto_class`` is the task's transformers Auto class (used by ``hf/`` models).
    """
    options = asdict(config) if isinstance(config, ModelConfig) else dict(config or {})
    name = name or options.get("name")
    if not name:
        raise ConfigError("[model] name is not set")
    kwargs = dict(options.get("kwargs") or {})
    labels = options.get("num_labels") or num_labels
    request = ModelRequest(
        num_labels=int(labels) if labels is not None else None,
        in_channels=int(options.get("in_channels") or in_channels or 3),
        pretrained=bool(options.get("pretrained")),
        auto_class=auto_class,
        id2label=dict(enumerate(label_names))
        if label_names and labels and len(label_names) == labels
        else {},
        trust_remote_code=bool(options.get("trust_remote_code")),
        name=name,
    )
    builder = MODELS.get(name)
    try:
        return builder(request, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"[model] {name}: bad kwargs {sorted(kwargs)}: {exc}") from None

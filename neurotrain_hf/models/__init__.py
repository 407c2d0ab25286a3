"""Models: the registry and ``get_model``; the ``hf/`` prefix (any transformers model, through the task's
Auto class). Each task registers its own architectures from its folder (``TaskSpec.models``)."""

from . import hf  # noqa: F401  (registers the hf/ prefix)
from .registry import MODELS, ModelRequest, get_model, list_models, logits_of, register_model

__all__ = ["MODELS", "ModelRequest", "get_model", "list_models", "logits_of", "register_model"]

"""Models: the registry, ``get_model`` and the built-in architectures."""

from . import external, simple_cnn  # noqa: F401  (register built-ins and prefixes)
from .registry import MODELS, get_model, list_models, logits_of, register_model

__all__ = ["MODELS", "get_model", "list_models", "logits_of", "register_model"]

"""Models: the registry, ``get_model`` and the built-in architectures (all ``PreTrainedModel``s)."""

from . import dense, external, simple_cnn, unet  # noqa: F401  (register built-ins and prefixes)
from .registry import MODELS, ModelRequest, get_model, list_models, logits_of, register_model

__all__ = ["MODELS", "ModelRequest", "get_model", "list_models", "logits_of", "register_model"]

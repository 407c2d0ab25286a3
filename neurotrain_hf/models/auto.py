"""Registration with the transformers Auto classes, shared by every task's ``models`` module.

``import neurotrain_hf`` imports each task's models module (``TaskSpec.models``), whose calls here make
``AutoModelFor*.from_pretrained(folder)``, ``AutoImageProcessor.from_pretrained(folder)`` and
``transformers.pipeline(..., model=folder)`` load the folders we train, with no remote code.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoImageProcessor, PretrainedConfig


def register_auto_model(
    auto_class: type, config_class: type, model_class: type, processor: type | None
) -> None:
    """``config_class``'s model type -> ``model_class`` under ``auto_class`` (and ``processor`` under
    ``AutoImageProcessor`` for folders whose processor names no class); idempotent."""
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    auto_class.register(config_class, model_class, exist_ok=True)
    if processor is not None:
        AutoImageProcessor.register(
            config_class, image_processor_classes={"torchvision": processor}, exist_ok=True
        )


class ProcessorKey(PretrainedConfig):
    """Registration keys only: ``AutoImageProcessor`` resolves a saved ``image_processor_type`` by name among
    registered classes, and registration is keyed by a config class (no model uses these)."""


def register_processor(processor: type) -> None:
    """Make ``processor`` findable by its class name from any model folder (``image_processor_type``)."""
    key = type(
        f"{processor.__name__}Key",
        (ProcessorKey,),
        {"model_type": f"neurotrain_{processor.__name__.lower()}"},
    )
    AutoConfig.register(key.model_type, key, exist_ok=True)
    AutoImageProcessor.register(key, image_processor_classes={"torchvision": processor}, exist_ok=True)

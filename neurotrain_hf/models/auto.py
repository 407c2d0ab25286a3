"""Register our configs, models and image processor with the transformers Auto classes.

Imported by ``import neurotrain_hf``, so ``AutoModelForImageClassification.from_pretrained(folder)`` and
``AutoImageProcessor.from_pretrained(folder)`` load the folders we train, with no remote code.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

from ..data.processor import NeuroImageProcessor
from .external import TorchvisionClassifierConfig, TorchvisionForImageClassification
from .simple_cnn import MLPConfig, MLPForImageClassification, SimpleCNNConfig, SimpleCNNForImageClassification

CLASSIFIERS = [
    (SimpleCNNConfig, SimpleCNNForImageClassification),
    (MLPConfig, MLPForImageClassification),
    (TorchvisionClassifierConfig, TorchvisionForImageClassification),
]


def register_auto_classes() -> None:
    """Idempotent registration (a second import of the package re-registers nothing)."""
    for config_class, model_class in CLASSIFIERS:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModelForImageClassification.register(config_class, model_class, exist_ok=True)
        AutoImageProcessor.register(
            config_class, image_processor_classes={"torchvision": NeuroImageProcessor}, exist_ok=True
        )


register_auto_classes()

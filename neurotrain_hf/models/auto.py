"""Register our configs, models and image processor with the transformers Auto classes.

Imported by ``import neurotrain_hf``, so ``AutoModelForImageClassification.from_pretrained(folder)`` and
``AutoImageProcessor.from_pretrained(folder)`` load the folders we train, with no remote code.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForObjectDetection,
    AutoModelForSemanticSegmentation,
    PretrainedConfig,
)

from ..data.detection_processor import NeuroDetectionProcessor
from ..data.processor import NeuroImageProcessor
from ..data.volume_processor import NeuroVolumeProcessor
from .dense import (
    MonaiForSemanticSegmentation,
    MonaiSegmentationConfig,
    SmpForSemanticSegmentation,
    SmpSegmentationConfig,
)
from .detection import TorchvisionDetectorConfig, TorchvisionForObjectDetection
from .external import TorchvisionClassifierConfig, TorchvisionForImageClassification
from .simple_cnn import MLPConfig, MLPForImageClassification, SimpleCNNConfig, SimpleCNNForImageClassification
from .unet import UNetConfig, UNetForSemanticSegmentation

AUTO_MODELS = [
    (AutoModelForImageClassification, SimpleCNNConfig, SimpleCNNForImageClassification),
    (AutoModelForImageClassification, MLPConfig, MLPForImageClassification),
    (AutoModelForImageClassification, TorchvisionClassifierConfig, TorchvisionForImageClassification),
    (AutoModelForObjectDetection, TorchvisionDetectorConfig, TorchvisionForObjectDetection),
    (AutoModelForSemanticSegmentation, UNetConfig, UNetForSemanticSegmentation),
    (AutoModelForSemanticSegmentation, MonaiSegmentationConfig, MonaiForSemanticSegmentation),
    (AutoModelForSemanticSegmentation, SmpSegmentationConfig, SmpForSemanticSegmentation),
]


def register_auto_classes() -> None:
    """Idempotent registration (a second import of the package re-registers nothing)."""
    for auto_class, config_class, model_class in AUTO_MODELS:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        auto_class.register(config_class, model_class, exist_ok=True)
        AutoImageProcessor.register(
            config_class, image_processor_classes={"torchvision": NeuroImageProcessor}, exist_ok=True
        )


class ProcessorKey(PretrainedConfig):
    """Registration keys only: ``AutoImageProcessor`` resolves a saved ``image_processor_type`` by name among
    registered classes, and registration is keyed by a config class (no model uses these)."""


def register_processors() -> None:
    """Our other processors (volumes, detection), findable by name from any model folder."""
    for processor in (NeuroVolumeProcessor, NeuroDetectionProcessor):
        key = type(
            f"{processor.__name__}Key",
            (ProcessorKey,),
            {"model_type": f"neurotrain_{processor.__name__.lower()}"},
        )
        AutoConfig.register(key.model_type, key, exist_ok=True)
        AutoImageProcessor.register(key, image_processor_classes={"torchvision": processor}, exist_ok=True)


register_auto_classes()
register_processors()

"""The segmentation task's models, registered with the model registry and, with their processors, with
``AutoModelForSemanticSegmentation``: our U-Net (``unet.py``, 2D and 3D) and the MONAI / smp wrappers
(``dense.py``). A trained folder loads with the Auto classes (and ``pipeline("image-segmentation")`` for
2D models) after ``import neurotrain_hf``."""

from __future__ import annotations

from transformers import AutoModelForSemanticSegmentation

from ...models.auto import register_auto_model, register_processor
from .dense import (
    MonaiForSemanticSegmentation,
    MonaiSegmentationConfig,
    SmpForSemanticSegmentation,
    SmpSegmentationConfig,
)
from .processor import NeuroSegmentationProcessor
from .unet import UNetConfig, UNetForSemanticSegmentation
from .volume_processor import NeuroVolumeProcessor

for _config, _model in (
    (UNetConfig, UNetForSemanticSegmentation),
    (MonaiSegmentationConfig, MonaiForSemanticSegmentation),
    (SmpSegmentationConfig, SmpForSemanticSegmentation),
):
    register_auto_model(AutoModelForSemanticSegmentation, _config, _model, NeuroSegmentationProcessor)
register_processor(NeuroVolumeProcessor)
register_processor(NeuroSegmentationProcessor)

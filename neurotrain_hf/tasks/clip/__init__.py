"""CLIP-style image-text training: caption folders, COCO captions, Flickr30k, Hub, synthetic shapes."""

from .. import TaskSpec

SPEC = TaskSpec(
    name="clip",
    task="neurotrain_hf.tasks.clip.task:ClipTask",
    training="neurotrain_hf.tasks.clip.config:ClipConfig",
    dataset="neurotrain_hf.tasks.clip.config:ClipDataset",
    augmentation="neurotrain_hf.tasks.clip.config:ClipAugmentation",
    sources="neurotrain_hf.tasks.clip.data",
    models="neurotrain_hf.tasks.clip.models",
    default_model="clip_tiny",
    description="CLIP-style image-text contrastive training (caption folders, COCO, Flickr30k, Hub).",
)

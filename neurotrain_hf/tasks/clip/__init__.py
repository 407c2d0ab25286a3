"""CLIP-style image-text training: contrastive (InfoNCE or SigLIP) with gathered negatives, retrieval metrics."""

from .. import TaskSpec, register_task

register_task(
    TaskSpec(
        name="clip",
        config="neurotrain_hf.tasks.clip.config:ClipConfig",
        task="neurotrain_hf.tasks.clip.task:ClipTask",
        sources="neurotrain_hf.tasks.clip.data",
        description="Image-text contrastive training (CLIP/SigLIP): synthetic shapes, caption folders, COCO, Flickr30k, Hub.",
    )
)

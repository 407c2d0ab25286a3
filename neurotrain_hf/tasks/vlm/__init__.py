"""The VLM task: LLaVA-style image-text-to-text fine-tuning with role-masked labels, projector / LoRA /
full stages, QLoRA, medical VQA layouts and generation-scored answers."""

from .. import TaskSpec

SPEC = TaskSpec(
    name="vlm",
    task="neurotrain_hf.tasks.vlm.task:VLMTask",
    training="neurotrain_hf.tasks.vlm.config:VLMConfig",
    dataset="neurotrain_hf.tasks.vlm.config:VLMDataset",
    augmentation="neurotrain_hf.tasks.vlm.config:VLMAugmentation",
    sources="neurotrain_hf.tasks.vlm.data",
    models="neurotrain_hf.tasks.vlm.models",
    default_model="llava_tiny",
    description="Vision-language models (LLaVA-style): visual question answering and image chat.",
)

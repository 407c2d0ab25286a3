"""The diffusion task: DDPM training on diffusers UNets (unconditional, class- or mask-conditioned), EMA,
min-SNR weighting, classifier-free guidance, sampling with DDPM / DDIM / DPM-Solver++ and FID/KID."""

from .. import TaskSpec

SPEC = TaskSpec(
    name="diffusion",
    task="neurotrain_hf.tasks.diffusion.task:DiffusionTask",
    training="neurotrain_hf.tasks.diffusion.config:DiffusionConfig",
    dataset="neurotrain_hf.tasks.diffusion.config:DiffusionDataset",
    augmentation="neurotrain_hf.tasks.diffusion.config:DiffusionAugmentation",
    sources="neurotrain_hf.tasks.diffusion.sources",
    models="neurotrain_hf.tasks.diffusion.models",
    default_model="unet2d",
    description="Denoising diffusion (DDPM) image generation: unconditional, class- or mask-conditioned.",
    exports=("neurotrain_hf.tasks.diffusion.pipeline:NeuroDiffusionPipeline",),
)

"""2D (and 3D) semantic segmentation: retinal vessels, skin lesions, image/mask folders, Hub datasets."""

from .. import TaskSpec, register_task

register_task(
    TaskSpec(
        name="segmentation",
        config="neurotrain_hf.tasks.segmentation.config:SegmentationConfig",
        task="neurotrain_hf.tasks.segmentation.task:SegmentationTask",
        sources="neurotrain_hf.tasks.segmentation.data",
        description="Semantic segmentation (synthetic retina, DRIVE, CHASE_DB1, STARE, HRF, ISIC, folders, Hub).",
    )
)

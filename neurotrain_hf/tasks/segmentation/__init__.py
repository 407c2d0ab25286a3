"""2D and 3D semantic segmentation: retinal vessels, skin lesions, NIfTI volumes, image/mask folders, Hub."""

from .. import TaskSpec

SPEC = TaskSpec(
    name="segmentation",
    task="neurotrain_hf.tasks.segmentation.task:SegmentationTask",
    training="neurotrain_hf.tasks.segmentation.config:SegmentationConfig",
    dataset="neurotrain_hf.tasks.segmentation.config:SegmentationDataset",
    augmentation="neurotrain_hf.tasks.segmentation.config:SegmentationAugmentation",
    sources="neurotrain_hf.tasks.segmentation.data",
    models="neurotrain_hf.tasks.segmentation.models",
    default_model="unet",
    description="Semantic segmentation (synthetic retina, DRIVE, CHASE_DB1, STARE, HRF, ISIC, BTCV, BraTS, MSD, "
    "folders, Hub).",
)

"""The segmentation task's sections: ``[training]`` (``SegmentationConfig``), ``[dataset]`` (images or
NIfTI volumes) and ``[augmentation]`` (2D v2 ops or 3D MONAI patches)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config.fields import ChannelFields, ColumnFields, HybridFields, ImageOpsFields, NormalizeFields
from ...config.sections import AugmentationConfig, DatasetConfig
from ...errors import ConfigError
from ...losses import LossFields
from ...trainer.neuro_config import NeuroTrainingArguments
from . import metrics as _metrics  # noqa: F401  (registers the segmentation metric family)

DEFAULT_METRICS = [
    "f1",
    "accuracy",
    "sensitivity",
    "specificity",
    "auc",
    "iou",
    "mcc",
    "best_f1",
    "best_f1_threshold",
    "mean_dice",
    "mean_iou",
]


@dataclass
class SegmentationDataset(HybridFields, ChannelFields, ColumnFields, DatasetConfig):
    """``[dataset]`` of segmentation: image/mask pairs, or NIfTI volumes (the volume keys)."""

    name: str = field(
        default="synthetic_retina",
        metadata={"help": "Registered dataset name; `neurotrain list datasets` shows them."},
    )
    split_file: str | None = field(
        default=None,
        metadata={
            "help": 'Volumes: a MONAI-style split json ({"training": [{"image", "label"}], '
            '"validation": [...]}, paths relative to root); default: the dataset\'s usual split.'
        },
    )
    spacing: list[float] | None = field(
        default=None,
        metadata={
            "help": "Volumes: target voxel spacing in mm (x, y, z); default: the fingerprint's median."
        },
    )
    intensity: str = field(
        default="auto",
        metadata={
            "help": "Volumes: normalisation. `ct` (clip to the foreground's 0.5-99.5 percentiles, z-score with "
            "its mean/std: nnU-Net), `window` (intensity_window -> [0, 1], MONAI's tutorials), `zscore` (per "
            "volume and channel over non-zero voxels: MR), `none`; `auto`: ct for CT, zscore otherwise.",
            "choices": ["auto", "ct", "window", "zscore", "none"],
        },
    )
    intensity_window: list[float] | None = field(
        default=None, metadata={"help": 'Volumes, `intensity = "window"`: [low, high] (e.g. HU [-175, 250]).'}
    )
    crop_foreground: bool = field(
        default=False,
        metadata={
            "help": "Volumes: train on the bounding box of the non-zero image voxels (skull-stripped MR)."
        },
    )
    preprocessed_dir: str | None = field(
        default=None,
        metadata={
            "help": "Volumes: cache of preprocessed volumes, reused across runs and keyed by the files and the "
            "preprocessing settings; default: $NEUROTRAIN_CACHE/preprocessed (~/.cache/neurotrain); `off` disables."
        },
    )


@dataclass
class SegmentationAugmentation(NormalizeFields, ImageOpsFields, AugmentationConfig):
    """``[augmentation]`` of segmentation: 2D v2 ops moving the mask with the image, or 3D MONAI patches."""

    foreground_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Probability that a training patch (`random_crop`, volumes: `patch_size`) is centred on "
            "foreground.",
            "min": 0.0,
            "max": 1.0,
        },
    )
    patch_size: list[int] | None = field(
        default=None,
        metadata={
            "help": "Volumes: training patch size (x, y, z; one value = a cube); also the sliding window."
        },
    )
    samples_per_volume: int = field(
        default=1,
        metadata={
            "help": "Volumes: patches drawn from each loaded volume per step (RandCropByPosNegLabeld).",
            "min": 1,
        },
    )
    axis_flip: float = field(
        default=0.0,
        metadata={
            "help": "Volumes: probability of flipping along each spatial axis.",
            "min": 0.0,
            "max": 1.0,
        },
    )
    rotate90: float = field(
        default=0.0,
        metadata={
            "help": "Volumes: probability of a random 90-degree rotation in the x-y plane.",
            "min": 0.0,
            "max": 1.0,
        },
    )
    intensity_shift: float = field(
        default=0.0,
        metadata={
            "help": "Volumes: random intensity offset in [-v, v] (prob. 0.5, after normalisation).",
            "min": 0.0,
        },
    )
    intensity_scale: float = field(
        default=0.0,
        metadata={
            "help": "Volumes: random intensity scale factor in [1 - v, 1 + v] (prob. 0.5).",
            "min": 0.0,
        },
    )


@dataclass
class SegmentationConfig(LossFields, NeuroTrainingArguments):
    """Segmentation: Dice + cross-entropy by default; retinal metrics inside the FOV, Dice/IoU per class.

    The threshold, inference and ``post_*`` keys become the model's ``SegmentationSettings``, saved once
    in its ``config.json`` and read by evaluation, the Tester, the Predictor, pipelines and demos.
    """

    metric_families = ("segmentation",)
    loss_kinds = ("dense",)

    loss: str = field(
        default="dice+ce",
        metadata={"help": "Loss from the registry or a sum: dice, ce, tversky, focal_tversky (`dice+ce`)."},
    )
    metrics: list[str] | None = field(
        default_factory=lambda: list(DEFAULT_METRICS),
        metadata={
            "help": "Inside the FOV (binary heads): accuracy, sensitivity, specificity, precision, f1, iou, "
            "mcc, auc, best_f1, best_f1_threshold; whole image (volume): mean_dice, mean_iou, and (slower) "
            "mean_nsd, mean_hd95; `per_class` adds dice_<class> (and nsd_/hd95_ when computed) per class or "
            "region (BraTS: ET, TC, WT)."
        },
    )
    metric_for_best_model: str | None = field(
        default="f1", metadata={"help": "Metric that picks the best checkpoint (F1 = Dice inside the FOV)."}
    )
    deep_supervision: bool = field(
        default=False,
        metadata={
            "help": "Add the model's auxiliary decoder outputs to the loss (weights halving per level, as "
            "nnU-Net); needs a model built with deep supervision (e.g. unet kwargs deep_supervision = true)."
        },
    )
    nsd_tolerance: float = field(
        default=1.0,
        metadata={
            "help": "Normalised surface Dice tolerance (mean_nsd): pixels in 2D, mm in 3D.",
            "min": 0.0,
        },
    )
    nsd_tolerances: list[float] | None = field(
        default=None,
        metadata={
            "help": "Per-class NSD tolerances (background excluded; regions for BraTS), overriding nsd_tolerance."
        },
    )
    mirror_axes: list[int] | None = field(
        default=None,
        metadata={
            "help": "Test-time flips: logits averaged over every combination of flips of these spatial axes "
            "(e.g. [0, 1, 2]: 8 passes, as nnU-Net); evaluation, testing and the Predictor."
        },
    )
    threshold: float | str = field(
        default=0.5,
        metadata={
            "help": "Foreground probability threshold of binary (sigmoid) heads, or `best`: the threshold of "
            "the best validation F1 (chosen when training ends, saved with the model; 0.5 while training).",
            "min": 0.0,
            "max": 1.0,
        },
    )
    eval_mode: str = field(
        default="full",
        metadata={
            "help": "Evaluation and prediction: `full` image (padded to the network's multiple) or `sliding` "
            "window (MONAI SlidingWindowInferer).",
            "choices": ["full", "sliding"],
        },
    )
    roi_size: int | None = field(
        default=None,
        metadata={
            "help": "Sliding-window size; default: [augmentation] random_crop (patch_size for volumes).",
            "min": 1,
        },
    )
    sw_overlap: float = field(
        default=0.5, metadata={"help": "Sliding-window overlap.", "min": 0.0, "max": 0.95}
    )
    sw_batch_size: int = field(default=8, metadata={"help": "Windows per forward pass.", "min": 1})
    sw_blend: str = field(
        default="gaussian",
        metadata={"help": "Blending of overlapping windows.", "choices": ["gaussian", "constant"]},
    )
    overlays: int = field(
        default=8, metadata={"help": "Overlay PNGs the Tester writes (first N test images).", "min": 0}
    )
    post_opening: int = field(
        default=0,
        metadata={"help": "Predictor post-processing: opening radius in pixels (0 = off).", "min": 0},
    )
    post_closing: int = field(
        default=0,
        metadata={"help": "Predictor post-processing: closing radius in pixels (0 = off).", "min": 0},
    )
    post_fill_holes: bool = field(default=False, metadata={"help": "Predictor post-processing: fill holes."})
    post_min_size: int = field(
        default=0,
        metadata={"help": "Predictor post-processing: drop components smaller than this (pixels).", "min": 0},
    )
    post_keep_largest: bool = field(
        default=False, metadata={"help": "Predictor post-processing: keep the largest component per class."}
    )
    post_connectivity: int = field(
        default=1,
        metadata={
            "help": "Component connectivity: 1 = faces only, 2 (3 in 3D) = with diagonals.",
            "min": 1,
            "max": 3,
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.threshold, str) and self.threshold != "best":
            raise ConfigError(
                f"[training] threshold = {self.threshold!r}: expected a number in [0, 1] or 'best'"
            )
        evaluates = str(getattr(self.eval_strategy, "value", self.eval_strategy)) != "no"
        if self.threshold == "best" and not (self.metrics and evaluates):
            raise ConfigError(
                "[training] threshold = 'best' is chosen on validation: it needs evaluation (eval_strategy) "
                "and [training] metrics"
            )
        super().__post_init__()

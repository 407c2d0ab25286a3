"""``SegmentationConfig``: the ``[training]`` section of 2D (and 3D) segmentation experiments."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...trainer.neuro_config import NeuroTrainingArguments

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
class SegmentationConfig(NeuroTrainingArguments):
    """Segmentation: Dice + cross-entropy by default; retinal metrics inside the FOV, Dice/IoU per class."""

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
    threshold: float = field(
        default=0.5,
        metadata={
            "help": "Foreground probability threshold of binary (sigmoid) heads.",
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

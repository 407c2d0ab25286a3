"""Groups of section keys that several tasks read, as dataclass mixins a task's section classes combine.

A task's ``[dataset]`` class is ``DatasetConfig`` plus the groups it reads plus its own keys; likewise
for ``[augmentation]``. A key no group of the chosen task declares is refused when the file is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ColumnFields:
    """``[dataset]`` column names of Hub / tabular sources."""

    image_column: str | None = field(
        default=None, metadata={"help": "Image column name; default: the dataset's own (`image`, `img`)."}
    )
    label_column: str | None = field(
        default=None,
        metadata={"help": "Label column name; default: the dataset's own (`label`, `fine_label`, ...)."},
    )


@dataclass
class ChannelFields:
    """``[dataset]`` channel conversion of image files."""

    channels: int | None = field(
        default=None,
        metadata={
            "help": "Channels every image is converted to (1 = grey, 3 = RGB); default: 3 when any image "
            "of the dataset is in colour, else 1.",
            "choices": [1, 3],
        },
    )


@dataclass
class HybridFields:
    """``[dataset]`` keys of ``name = "hybrid"``: several registered datasets mixed in one run."""

    sources: dict = field(
        default_factory=dict,
        metadata={
            "help": '`name = "hybrid"`: the datasets to mix, as a table of tables in priority order, e.g. '
            '{ drive = { root = "data/DRIVE", weight = 2 }, chase_db1 = { root = "data/CHASEDB1" } }; '
            "each takes [dataset] keys (name defaults to the table key) and a sampling `weight`."
        },
    )
    sampling: str = field(
        default="weighted",
        metadata={
            "help": "Hybrid training mix: `weighted` (by each source's weight), `balanced` (equal shares) or "
            "`priority` (all samples, listed order; a sample id already taken from an earlier source is skipped).",
            "choices": ["weighted", "balanced", "priority"],
        },
    )
    sampling_seed: int = field(
        default=0, metadata={"help": "Seed of the hybrid mix and of each source's split.", "min": 0}
    )


@dataclass
class FlipFields:
    """``[augmentation]`` random flips (geometric: masks and boxes move with the image)."""

    horizontal_flip: float = field(
        default=0.0, metadata={"help": "Probability of a horizontal flip.", "min": 0.0, "max": 1.0}
    )
    vertical_flip: float = field(
        default=0.0, metadata={"help": "Probability of a vertical flip.", "min": 0.0, "max": 1.0}
    )


@dataclass
class ColorJitterFields:
    """``[augmentation]`` photometric jitter of the image only."""

    color_jitter: float = field(
        default=0.0,
        metadata={
            "help": "Brightness/contrast/saturation jitter strength (0 disables).",
            "min": 0.0,
            "max": 1.0,
        },
    )


@dataclass
class ImageOpsFields(FlipFields, ColorJitterFields):
    """``[augmentation]`` of 2D image tasks: resize, then the random ``torchvision.transforms.v2`` ops
    built by ``data.transforms.image_ops``."""

    resize: int | None = field(
        default=None, metadata={"help": "Resize images to this square size.", "min": 1}
    )
    random_crop: int | None = field(
        default=None,
        metadata={"help": "Random crop size for training (center crop for evaluation).", "min": 1},
    )
    crop_padding: int = field(
        default=0, metadata={"help": "Zero padding added before the random crop.", "min": 0}
    )
    rotation: float = field(
        default=0.0,
        metadata={"help": "Maximum rotation in degrees (uniform in [-r, r]).", "min": 0.0, "max": 180.0},
    )
    elastic: float = field(
        default=0.0,
        metadata={
            "help": "Elastic deformation strength (alpha of v2.ElasticTransform; 0 disables).",
            "min": 0.0,
        },
    )
    gamma: float = field(
        default=0.0,
        metadata={
            "help": "Random gamma in [1 - g, 1 + g] on the image only (0 disables).",
            "min": 0.0,
            "max": 0.9,
        },
    )
    clahe: float = field(
        default=0.0,
        metadata={
            "help": "Probability of CLAHE contrast enhancement (scikit-image equalize_adapthist) on the image.",
            "min": 0.0,
            "max": 1.0,
        },
    )


@dataclass
class NormalizeFields:
    """``[augmentation]`` normalisation saved in the model's image processor."""

    normalize: bool = field(default=True, metadata={"help": "Normalize with `mean` and `std`."})
    mean: list[float] | None = field(
        default=None, metadata={"help": "Per-channel mean; default: the dataset's."}
    )
    std: list[float] | None = field(
        default=None, metadata={"help": "Per-channel std; default: the dataset's."}
    )

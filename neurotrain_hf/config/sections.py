"""The experiment file's sections other than ``[training]``; each maps onto one dataclass.

``[training]`` maps onto the task's ``TrainingArguments`` subclass (see ``neurotrain_hf.tasks``).
Field metadata: ``help`` (shown by ``--help`` and the docs), ``choices``, and ``min``/``max`` bounds
checked when a file is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BasicConfig:
    """``[basic]``: what to run and where its run folder goes."""

    task: str = field(
        default="classification", metadata={"help": "Task to run; `neurotrain list tasks` shows them."}
    )
    run_id: str = field(
        default="",
        metadata={"help": "Name of the run folder `<output_dir>/<task>/<run_id>`; empty means a timestamp."},
    )
    seed: int = field(
        default=42, metadata={"help": "Seed for data splits, initialisation and training.", "min": 0}
    )
    output_dir: str = field(default="runs", metadata={"help": "Root folder of all run folders."})


@dataclass
class ModelConfig:
    """``[model]``: which network to build."""

    name: str = field(
        default="simple_cnn",
        metadata={
            "help": "Registered model name, or `timm/<name>`, `torchvision/<name>`, `hf/<model-id-or-path>`; "
            "`neurotrain list models` shows the registered ones."
        },
    )
    pretrained: bool = field(
        default=False, metadata={"help": "Load pretrained weights (needs them cached or network access)."}
    )
    num_labels: int | None = field(
        default=None,
        metadata={"help": "Number of output classes; default: taken from the dataset.", "min": 1},
    )
    in_channels: int | None = field(
        default=None, metadata={"help": "Input channels; default: taken from the dataset.", "min": 1}
    )
    kwargs: dict = field(
        default_factory=dict,
        metadata={"help": "Extra keyword arguments for the model constructor, as a TOML table."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow `hf/` models that run code from their repository (off by default)."},
    )


@dataclass
class DatasetConfig:
    """``[dataset]``: where samples come from and how splits are made."""

    name: str = field(
        default="digits", metadata={"help": "Registered dataset name; `neurotrain list datasets` shows them."}
    )
    root: str | None = field(
        default=None,
        metadata={"help": "Local folder holding the dataset's original files (see docs/datasets.md)."},
    )
    hub_id: str | None = field(
        default=None,
        metadata={"help": "Hub dataset id (or local dataset folder) for `datasets.load_dataset`."},
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    image_column: str | None = field(
        default=None, metadata={"help": "Image column name; default: the dataset's own (`image`, `img`)."}
    )
    label_column: str | None = field(
        default=None,
        metadata={"help": "Label column name; default: the dataset's own (`label`, `fine_label`)."},
    )
    caption_column: str | None = field(
        default=None,
        metadata={
            "help": "Caption column of image-text data (a string or a list of strings per image); "
            "default: `captions`, `caption`, `text` or `sentences`, whichever exists."
        },
    )
    valid_ratio: float = field(
        default=0.1,
        metadata={
            "help": "Fraction of train split off as validation when the source has none.",
            "min": 0.0,
            "max": 0.9,
        },
    )
    test_ratio: float = field(
        default=0.2,
        metadata={
            "help": "Fraction split off as test when the source has no test split.",
            "min": 0.0,
            "max": 0.9,
        },
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Keep at most this many samples per split (quick runs).", "min": 1}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "`datasets` cache folder."})
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
    channels: int | None = field(
        default=None,
        metadata={
            "help": "Channels every image is converted to (1 = grey, 3 = RGB); default: 3 when any image "
            "of the dataset is in colour, else 1.",
            "choices": [1, 3],
        },
    )
    skip_bad_samples: bool = field(
        default=False,
        metadata={
            "help": "Skip unreadable or invalid samples (logged and counted in the report) instead of "
            "stopping with an error naming the first one."
        },
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
class AugmentationConfig:
    """``[augmentation]``: on-the-fly transforms; random ones apply to the train split only."""

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
    horizontal_flip: float = field(
        default=0.0, metadata={"help": "Probability of a horizontal flip.", "min": 0.0, "max": 1.0}
    )
    vertical_flip: float = field(
        default=0.0, metadata={"help": "Probability of a vertical flip.", "min": 0.0, "max": 1.0}
    )
    rotation: float = field(
        default=0.0,
        metadata={"help": "Maximum rotation in degrees (uniform in [-r, r]).", "min": 0.0, "max": 180.0},
    )
    color_jitter: float = field(
        default=0.0,
        metadata={
            "help": "Brightness/contrast/saturation jitter strength (0 disables).",
            "min": 0.0,
            "max": 1.0,
        },
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
    foreground_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Segmentation: probability that a `random_crop` patch is centred on a foreground pixel.",
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
    normalize: bool = field(default=True, metadata={"help": "Normalize with `mean` and `std`."})
    mean: list[float] | None = field(
        default=None, metadata={"help": "Per-channel mean; default: the dataset's."}
    )
    std: list[float] | None = field(
        default=None, metadata={"help": "Per-channel std; default: the dataset's."}
    )


@dataclass
class TestingConfig:
    """``[testing]``: what the Tester evaluates after training (or on its own)."""

    split: str = field(
        default="test", metadata={"help": "Split to evaluate.", "choices": ["test", "valid", "train"]}
    )
    checkpoint: str = field(
        default="best",
        metadata={"help": "`best`, `last`, or a checkpoint folder path to evaluate."},
    )
    per_sample: bool = field(
        default=True, metadata={"help": "Write per-sample predictions and metrics as CSV."}
    )
    run_after_training: bool = field(default=True, metadata={"help": "Run the Tester when training ends."})


@dataclass
class PeftConfig:
    """``[peft]``: parameter-efficient fine-tuning through PEFT; writing the section turns LoRA on."""

    method: str = field(
        default="none",
        metadata={
            "help": "`lora` (the default once a [peft] section is written) or `none`.",
            "choices": ["none", "lora"],
        },
    )
    r: int = field(default=8, metadata={"help": "LoRA rank.", "min": 1})
    alpha: float = field(
        default=16.0, metadata={"help": "LoRA scaling numerator (scale = alpha / r).", "min": 0.0}
    )
    dropout: float = field(
        default=0.0, metadata={"help": "Dropout on the LoRA input.", "min": 0.0, "max": 1.0}
    )
    target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Module names (suffixes) that get LoRA; default: `q_proj`, `v_proj` for CLIP-like models, "
            "else PEFT's `all-linear`."
        },
    )
    modules_to_save: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Modules trained in full and saved with the adapter (e.g. a new `classifier` head). "
            "Norm layers with running statistics (BatchNorm) are added automatically, so a reloaded adapter "
            "reproduces the trained model exactly."
        },
    )
    bias: str = field(
        default="none", metadata={"help": "Which biases train.", "choices": ["none", "all", "lora_only"]}
    )
    merge: bool = field(
        default=True,
        metadata={"help": "Also save the adapter merged into its base as the run's `model/` folder."},
    )


@dataclass
class HubConfig:
    """``[hub]``: sharing the run on the Hugging Face Hub (endpoint, token and cache from ``HF_ENDPOINT``,
    ``HF_TOKEN`` / ``hf auth login`` and ``HF_HOME``; never from this file)."""

    repo_id: str | None = field(
        default=None, metadata={"help": "Model repo to push to, `namespace/name` (created when missing)."}
    )
    push_to_hub: bool = field(
        default=False,
        metadata={"help": "Push the run folder to `repo_id` when training ends (main process)."},
    )
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    revision: str | None = field(
        default=None, metadata={"help": "Branch to push to (created from main when missing); default main."}
    )
    include_checkpoints: bool = field(
        default=False, metadata={"help": "Also upload the checkpoint folders' weights (safetensors)."}
    )
    include_optimizer: bool = field(
        default=False,
        metadata={"help": "With checkpoints: also their optimizer, scheduler and RNG state (pickles)."},
    )
    license: str = field(
        default="apache-2.0", metadata={"help": "License id written into the model card (Hub license ids)."}
    )


SECTIONS: dict[str, type] = {
    "basic": BasicConfig,
    "model": ModelConfig,
    "dataset": DatasetConfig,
    "augmentation": AugmentationConfig,
    "testing": TestingConfig,
    "peft": PeftConfig,
    "hub": HubConfig,
}
"""Fixed sections; ``[training]`` is resolved per task."""

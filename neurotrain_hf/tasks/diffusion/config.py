"""The diffusion task's sections: ``[training]`` (``DiffusionConfig``), ``[dataset]`` and ``[augmentation]``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config.fields import ChannelFields
from ...config.sections import AugmentationConfig, DatasetConfig
from ...errors import ConfigError
from ...trainer.neuro_config import NeuroTrainingArguments
from . import metrics as _metrics  # noqa: F401  (registers the generation metric family)

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SAMPLERS = ("ddpm", "ddim", "dpm++")
CONDITIONINGS = ("none", "class", "mask")


@dataclass
class DiffusionDataset(ChannelFields, DatasetConfig):
    """``[dataset]`` of diffusion: images, with a class column (class conditioning) or a mask (mask
    conditioning) when the model is conditioned."""

    name: str = field(
        default="color_shapes",
        metadata={"help": "Registered dataset name; `neurotrain list datasets` shows them."},
    )
    image_size: int = field(
        default=32,
        metadata={
            "help": "Side of the square images the model generates (inputs are resized to it).",
            "min": 8,
        },
    )
    image_column: str | None = field(
        default=None, metadata={"help": "Image column of Hub / folder data; default `image` or `img`."}
    )
    class_column: str | None = field(
        default=None,
        metadata={"help": "Class column (class conditioning); default `label` when the data has it."},
    )
    mask_column: str | None = field(
        default=None,
        metadata={"help": "Mask / label-map column (mask conditioning); default `mask` or `label`."},
    )
    num_samples: int = field(
        default=4000,
        metadata={
            "help": "Embedded synthetic data: training images (valid and test hold 256 each).",
            "min": 8,
        },
    )
    sampling_seed: int = field(
        default=0, metadata={"help": "Seed of the embedded synthetic images.", "min": 0}
    )


@dataclass
class DiffusionAugmentation(AugmentationConfig):
    """``[augmentation]`` of diffusion: random horizontal flips of the training images (and their masks)."""

    horizontal_flip: float = field(
        default=0.0,
        metadata={"help": "Probability of a horizontal flip per training image.", "min": 0.0, "max": 1.0},
    )


@dataclass
class DiffusionConfig(NeuroTrainingArguments):
    """DDPM training (diffusers schedulers) with min-SNR weighting, EMA, classifier-free guidance and
    sample-based evaluation (FID / KID through a feature network, accuracy of a classifier on samples)."""

    metric_families = ("generation", "mask_generation")

    conditioning: str = field(
        default="none",
        metadata={
            "help": "`none`; `class` (a class id per image, `num_class_embeds` in the UNet); `mask` (a "
            "mask / label map concatenated to the noisy input: image synthesis from masks).",
            "choices": list(CONDITIONINGS),
        },
    )
    prediction_type: str = field(
        default="epsilon",
        metadata={
            "help": "What the UNet predicts: the noise, the velocity v, or the clean sample.",
            "choices": list(PREDICTION_TYPES),
        },
    )
    num_train_timesteps: int = field(
        default=1000, metadata={"help": "Diffusion steps of the DDPM training schedule.", "min": 2}
    )
    beta_schedule: str = field(
        default="linear",
        metadata={
            "help": "diffusers beta schedule.",
            "choices": ["linear", "scaled_linear", "squaredcos_cap_v2"],
        },
    )
    snr_gamma: float | None = field(
        default=None,
        metadata={
            "help": "Min-SNR weighting (Hang et al. 2023), gamma = 5 is the paper's: the per-sample loss is "
            "weighted min(SNR, g)/SNR (epsilon), min(SNR, g)/(SNR + 1) (v), min(SNR, g) (sample); unset: none.",
            "min": 0.0,
        },
    )
    offset_noise: float = field(
        default=0.0,
        metadata={"help": "Offset noise strength (a per-channel constant added to the noise).", "min": 0.0},
    )
    input_perturbation: float = field(
        default=0.0,
        metadata={
            "help": "Input perturbation (Ning et al. 2023): the noised input uses noise + g * extra noise.",
            "min": 0.0,
        },
    )
    ema_decay: float | None = field(
        default=0.999,
        metadata={
            "help": "Maximum EMA decay of the weights (unset: no EMA). The EMA is stepped once per optimizer "
            "step, saved in checkpoints, used for samples and the saved model (raw weights kept beside it).",
            "min": 0.0,
            "max": 1.0,
        },
    )
    ema_warmup: bool = field(
        default=True,
        metadata={"help": "EMA warm-up: decay 1 - (1 + step / inv_gamma) ** -power (diffusers' EMAModel)."},
    )
    ema_inv_gamma: float = field(
        default=1.0, metadata={"help": "EMA warm-up inverse multiplicative factor.", "min": 0.0}
    )
    ema_power: float = field(default=0.75, metadata={"help": "EMA warm-up exponential factor.", "min": 0.0})
    condition_dropout: float = field(
        default=0.1,
        metadata={
            "help": "Classifier-free guidance training: probability of replacing a sample's condition with "
            "the null condition (0: no unconditional model).",
            "min": 0.0,
            "max": 1.0,
        },
    )
    guidance_scale: float = field(
        default=1.0,
        metadata={
            "help": "Classifier-free guidance at sampling (1: conditional only; > 1 needs condition_dropout > 0).",
            "min": 0.0,
        },
    )
    sampler: str = field(
        default="ddim",
        metadata={
            "help": "Sampler of evaluation and the saved model: DDPM, DDIM (eta 0) or DPM-Solver++ (2M).",
            "choices": list(SAMPLERS),
        },
    )
    sampling_steps: int = field(default=50, metadata={"help": "Denoising steps of the sampler.", "min": 1})
    sample_seed: int = field(
        default=1234,
        metadata={
            "help": "Seed of the fixed evaluation noise (sample i of a split always starts from the same noise)."
        },
    )
    fid_features: str | None = field(
        default=None,
        metadata={
            "help": "Feature network of FID / KID and sample_accuracy: `inception` (Inception-v3, weights "
            "from the local cache: comparable to the literature) or a classifier run / model folder of this "
            "project on the same data (not comparable to Inception-FID). Unset: no FID."
        },
    )
    fid_image_size: int | None = field(
        default=None,
        metadata={
            "help": "Size images are resized to (PIL bicubic) for the feature network; default: 299 for Inception, the image size otherwise.",
            "min": 8,
        },
    )
    segmenter: str | None = field(
        default=None,
        metadata={
            "help": "Mask conditioning: a segmentation run / model folder of this project; `mask_dice` is the "
            "Dice between each conditioning mask and its prediction on the generated image."
        },
    )
    grid_samples: int = field(
        default=16, metadata={"help": "Samples in the grid PNG written at each evaluation.", "min": 0}
    )
    metrics: list[str] | None = field(
        default_factory=lambda: ["fid", "kid", "sample_accuracy", "mask_dice"],
        metadata={
            "help": "`fid`, `kid` (need fid_features), `sample_accuracy` (class conditioning and a classifier) "
            "and `mask_dice` (mask conditioning and a segmenter)."
        },
    )
    metric_for_best_model: str | None = field(
        default="loss",
        metadata={"help": "Metric that picks the best checkpoint (`loss` or `fid`, lower is better)."},
    )

    def __post_init__(self) -> None:
        if self.snr_gamma is not None and self.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"[training] snr_gamma: unsupported prediction_type {self.prediction_type!r}")
        if self.guidance_scale != 1.0 and self.conditioning != "none" and self.condition_dropout <= 0:
            raise ConfigError(
                "[training] guidance_scale != 1 needs an unconditional model: set condition_dropout > 0"
            )
        if not self.fid_features:
            self.metrics = [m for m in (self.metrics or []) if m not in ("fid", "kid", "sample_accuracy")]
        elif self.conditioning != "class":
            self.metrics = [m for m in (self.metrics or []) if m != "sample_accuracy"]
        if not self.segmenter or self.conditioning != "mask":
            self.metrics = [m for m in (self.metrics or []) if m != "mask_dice"]
        super().__post_init__()

"""The CLIP task's sections: ``[training]`` (``ClipConfig``), ``[dataset]`` and ``[augmentation]``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config.fields import ColumnFields, ImageOpsFields
from ...config.sections import AugmentationConfig, DatasetConfig
from ...errors import ConfigError
from ...trainer.neuro_config import NeuroTrainingArguments
from . import loss as _loss  # noqa: F401  (registers the contrastive losses)
from . import metrics as _metrics  # noqa: F401  (registers the retrieval metric family)

DEFAULT_METRICS = ["clip_retrieval", "zero_shot_accuracy"]


@dataclass
class ClipDataset(ColumnFields, DatasetConfig):
    """``[dataset]`` of CLIP: images with one or more captions each (and optional class labels)."""

    name: str = field(
        default="synthetic_shapes",
        metadata={"help": "Registered dataset name; `neurotrain list datasets` shows them."},
    )
    caption_column: str | None = field(
        default=None,
        metadata={
            "help": "Caption column of image-text data (a string or a list of strings per image); "
            "default: `captions`, `caption`, `text` or `sentences`, whichever exists."
        },
    )
    sampling_seed: int = field(
        default=0,
        metadata={"help": "Seed of the embedded synthetic dataset's images and captions.", "min": 0},
    )


@dataclass
class ClipAugmentation(ImageOpsFields, AugmentationConfig):
    """``[augmentation]`` of CLIP: random v2 ops on the training images; ``resize`` sets the image size of a
    model built from a config (default: the model's own)."""


@dataclass
class ClipConfig(NeuroTrainingArguments):
    """Contrastive image-text training with open_clip's options, retrieval recall@k and zero-shot accuracy."""

    metric_families = ("retrieval",)
    loss_kinds = ("contrastive",)

    loss: str = field(
        default="infonce",
        metadata={
            "help": "A contrastive loss of the registry: `infonce` (CLIP's symmetric cross-entropy with a "
            "learnable temperature, clamped to [0, ln 100] as open_clip) or `siglip` (the pairwise sigmoid "
            "loss; needs a model with a `logit_bias`, e.g. SiglipModel)."
        },
    )
    gather_with_grad: bool = field(
        default=True,
        metadata={
            "help": "Gather the features of every process with gradients (open_clip `--gather-with-grad`), "
            "so N processes x batch B train exactly like one process on batch N*B."
        },
    )
    local_loss: bool = field(
        default=False,
        metadata={
            "help": "Score only this process's samples against the global batch (open_clip `--local-loss`): "
            "memory linear in the global batch; same loss and gradients."
        },
    )
    contrastive_chunk: int = field(
        default=0,
        metadata={
            "help": "Gradient caching (GradCache): embed the batch this many samples at a time, compute the "
            "loss on the full batch (negatives of every process included), then back-propagate chunk by "
            "chunk. Same gradients as the full batch; activation memory of one chunk. 0 = off."
        },
    )
    freeze: str = field(
        default="none",
        metadata={
            "help": "Freeze a tower: `image` (LiT: locked image tower), `text`, or `none`.",
            "choices": ["none", "image", "text"],
        },
    )
    max_text_length: int | None = field(
        default=None,
        metadata={
            "help": "Token length captions are padded/truncated to; default: the text tower's maximum. "
            "Longer captions are truncated and counted in the report.",
            "min": 2,
        },
    )
    tokenizer_vocab_size: int = field(
        default=4096,
        metadata={
            "help": "Models built from a config: the vocabulary size of the tokenizer trained on the "
            "training captions (word-level; fewer words means a smaller vocabulary).",
            "min": 8,
        },
    )
    zero_shot_templates: list[str] = field(
        default_factory=lambda: ["a photo of a {}."],
        metadata={
            "help": "Prompt templates of zero-shot classification (the class name replaces `{}`; "
            "template embeddings are averaged per class)."
        },
    )
    retrieval_k: list[int] = field(
        default_factory=lambda: [1, 5, 10],
        metadata={"help": "Recall@k cut-offs of the retrieval metrics."},
    )
    metrics: list[str] | None = field(
        default_factory=lambda: list(DEFAULT_METRICS),
        metadata={
            "help": "`clip_retrieval` (image->text and text->image recall@k, any of an image's captions "
            "counts, and their mean `mean_recall`), `zero_shot_accuracy` (needs a label column)."
        },
    )
    metric_for_best_model: str | None = field(
        default="mean_recall",
        metadata={"help": "Metric that picks the best checkpoint (mean of the recall@k values)."},
    )

    def __post_init__(self) -> None:
        if self.contrastive_chunk < 0:
            raise ConfigError(
                f"[training] contrastive_chunk = {self.contrastive_chunk}: must be 0 (off) or more"
            )
        for template in self.zero_shot_templates:
            if "{}" not in template:
                raise ConfigError(
                    f"[training] zero_shot_templates: {template!r} has no {{}} for the class name"
                )
        super().__post_init__()

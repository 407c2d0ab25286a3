"""The VLM task's sections: ``[training]`` (``VLMConfig``), ``[dataset]`` and ``[augmentation]``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config.sections import AugmentationConfig, DatasetConfig
from ...errors import ConfigError
from ...trainer.neuro_config import NeuroTrainingArguments
from . import metrics as _metrics  # noqa: F401  (registers the answer-scoring family)

STAGES = ("projector", "lora", "full")
DEFAULT_METRICS = ["closed_accuracy", "open_f1", "open_recall", "exact_match", "bleu"]


@dataclass
class VLMDataset(DatasetConfig):
    """``[dataset]`` of the VLM task: images with conversations (or question/answer pairs, or captions)."""

    name: str = field(
        default="synthetic_vqa",
        metadata={"help": "Registered dataset name; `neurotrain list datasets` shows them."},
    )
    image_folder: str | None = field(
        default=None,
        metadata={
            "help": "Folder the `image` paths of LLaVA / TRL json are relative to; default: the json's folder "
            "(`root`)."
        },
    )
    data_files: list[str] = field(
        default_factory=list,
        metadata={
            "help": "LLaVA conversation json / jsonl or TRL messages json / jsonl / parquet files (relative to "
            "`root`); a file per split is named by `train`/`valid`/`test` in its name, else it is train."
        },
    )
    caption_dataset: str = field(
        default="captions_folder",
        metadata={
            "help": "`captions`: the CLIP task's dataset whose captions become describe-the-image turns "
            "(`captions_folder`, `coco_captions`, `flickr30k`, `hub_captions`, `synthetic_shapes`)."
        },
    )
    caption_prompt: str = field(
        default="Describe the image.",
        metadata={"help": "`captions`: the user turn each caption answers."},
    )
    num_images: int = field(
        default=1500,
        metadata={"help": "Embedded synthetic VQA: training images (4 questions each).", "min": 8},
    )
    held_out_images: int = field(
        default=100,
        metadata={
            "help": "Embedded synthetic VQA: images of the valid and of the test split each.",
            "min": 2,
        },
    )
    sampling_seed: int = field(
        default=0, metadata={"help": "Seed of the embedded synthetic images and questions.", "min": 0}
    )


@dataclass
class VLMAugmentation(AugmentationConfig):
    """``[augmentation]`` of the VLM task: none (answers about colour and position forbid most image
    augmentations); images are prepared by the model's processor."""


@dataclass
class VLMConfig(NeuroTrainingArguments):
    """Image-text-to-text fine-tuning (LLaVA-style): role-masked labels, stages, generation-scored answers."""

    metric_families = ("vqa",)

    train: str = field(
        default="full",
        metadata={
            "help": "What trains: `projector` (LLaVA stage 1: vision tower and language model frozen), `lora` "
            "(stage 2 with [peft] on the language model, projector trained in full) or `full` (language "
            "model and projector).",
            "choices": list(STAGES),
        },
    )
    train_vision_tower: bool = field(
        default=False,
        metadata={"help": "Also train the vision tower (models built from a config start untrained)."},
    )
    vision_tower: str | None = field(
        default=None,
        metadata={
            "help": "Models built from a config: take the vision tower (weights and image processor) from this "
            "CLIP run or model folder of the clip task."
        },
    )
    max_length: int = field(
        default=512,
        metadata={
            "help": "Longest token sequence (image tokens included). Text after the image tokens is cut and "
            "counted; a sample whose image tokens would be cut is an error (or skipped and counted with "
            "[dataset] skip_bad_samples).",
            "min": 8,
        },
    )
    max_new_tokens: int = field(
        default=16, metadata={"help": "Longest generated answer in evaluation and prediction.", "min": 1}
    )
    num_beams: int = field(default=1, metadata={"help": "Beam search width (1: greedy).", "min": 1})
    quantization: str = field(
        default="none",
        metadata={
            "help": "`4bit` / `8bit`: load an `hf/` base through bitsandbytes (QLoRA with train = `lora`), "
            "where its backend supports the machine.",
            "choices": ["none", "4bit", "8bit"],
        },
    )
    tokenizer_vocab_size: int = field(
        default=4096,
        metadata={
            "help": "Models built from a config: vocabulary size of the word-level tokenizer.",
            "min": 16,
        },
    )
    metrics: list[str] | None = field(
        default_factory=lambda: list(DEFAULT_METRICS),
        metadata={
            "help": "`closed_accuracy` (yes/no answers, whole-word normalised, every closed question counts), "
            "`open_recall` / `open_f1` (token overlap on open questions), `exact_match`, `bleu`."
        },
    )
    metric_for_best_model: str | None = field(
        default="exact_match", metadata={"help": "Metric that picks the best checkpoint."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep every column for the task's transforms (leave false)."}
    )

    def __post_init__(self) -> None:
        if self.quantization != "none" and self.train == "full":
            raise ConfigError(
                f"[training] quantization = {self.quantization!r} needs train = 'lora' (QLoRA) or 'projector': "
                "quantized weights do not train in full"
            )
        super().__post_init__()

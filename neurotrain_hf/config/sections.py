"""The experiment file's shared sections; each maps onto one dataclass.

``[dataset]``, ``[augmentation]`` and ``[training]`` map onto the chosen task's classes (its ``TaskSpec``
names them): subclasses of ``DatasetConfig``, ``AugmentationConfig`` and ``NeuroTrainingArguments``.
Field metadata: ``help`` (shown by ``--help`` and the docs), ``choices``, and ``min``/``max`` bounds
checked when a file is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class BasicConfig:
    """``[basic]``: what to run and where its run folder goes."""

    task: str = field(
        default="", metadata={"help": "Task to run (required); `neurotrain list tasks` shows them."}
    )
    run_id: str = field(
        default="",
        metadata={"help": "Name of the run folder `<output_dir>/<task>/<run_id>`; empty means a timestamp."},
    )
    seed: int = field(
        default=42, metadata={"help": "Seed for data splits, initialisation and training.", "min": 0}
    )
    output_dir: str = field(default="runs", metadata={"help": "Root folder of all run folders."})
    database: str = field(
        default="",
        metadata={
            "help": "Runs index (docs/runs.md): a SQLAlchemy URL (e.g. `postgresql+psycopg://host/db`, no "
            "password: use $NEUROTRAIN_DATABASE or ~/.pgpass) or a SQLite file; empty means "
            "$NEUROTRAIN_DATABASE, else `<output_dir>/neurotrain.db`; `none` turns indexing off."
        },
    )

    def __post_init__(self) -> None:
        if re.search(r"://[^/@:]*:[^/@]*@", self.database):
            from ..errors import ConfigError

            raise ConfigError(
                "[basic] database: the URL holds a password, and the config is copied into every run "
                "folder; set the URL in $NEUROTRAIN_DATABASE or the password in ~/.pgpass instead"
            )


@dataclass
class ModelConfig:
    """``[model]``: which network to build."""

    name: str = field(
        default="",
        metadata={
            "help": "Registered model name, or a prefix such as `hf/<model-id-or-path>`; `neurotrain list models` "
            "shows them; default: the task's own."
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
    """``[dataset]``: where samples come from and how splits are made (what every task reads; each task's
    own ``[dataset]`` class adds its keys, listed per task in docs/configuration.md)."""

    name: str = field(
        default="", metadata={"help": "Registered dataset name; `neurotrain list datasets` shows them."}
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
    skip_bad_samples: bool = field(
        default=False,
        metadata={
            "help": "Skip unreadable or invalid samples (logged and counted in the report) instead of "
            "stopping with an error naming the first one."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the train split from its shards (`parquet` from `neurotrain to-parquet`, `webdataset` "
            ".tar files, or such a Hub dataset) instead of loading it: split by process, shuffled by shard order "
            "and a buffer, resumed exactly; valid/test stay map-style (docs/distributed.md, Streaming shards)."
        },
    )
    shuffle_buffer: int = field(
        default=1000,
        metadata={
            "help": "Streaming: rows in the shuffle buffer (the shard order is shuffled each epoch with it); 0 "
            "turns shuffling off: shards and their rows in their order.",
            "min": 0,
        },
    )


@dataclass
class AugmentationConfig:
    """``[augmentation]``: on-the-fly transforms of the training split (random ones) and the deterministic
    preprocessing saved with the model; every key belongs to a task (docs/configuration.md, per task)."""


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
            "help": "Module names (suffixes) that get LoRA; default: the task's choice (the attention "
            "`q_proj`, `v_proj` of image-text models; PEFT's `all-linear` otherwise)."
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
class QuantizationConfig:
    """``[quantization]``: quantization-aware training (torchao): linear weights are fake-quantized while the
    model trains and converted to real quantized weights before it is saved (the run's test metrics are the
    quantized model's). Post-training quantization of a finished run is ``neurotrain quantize``."""

    qat: bool = field(
        default=False, metadata={"help": "Train with fake-quantized linear weights, save quantized."}
    )
    method: str = field(
        default="int8-weight",
        metadata={
            "help": "What QAT simulates: `int8-weight` (int8 per output channel) or `int4-weight` (int4 in groups).",
            "choices": ["int8-weight", "int4-weight"],
        },
    )
    group_size: int = field(
        default=32,
        metadata={
            "help": "int4-weight: weights per scale group (layers whose width it does not divide stay float).",
            "min": 1,
        },
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
    "testing": TestingConfig,
    "peft": PeftConfig,
    "quantization": QuantizationConfig,
    "hub": HubConfig,
}
"""Sections every task shares; ``[dataset]``, ``[augmentation]`` and ``[training]`` are the task's."""
TASK_SECTIONS = ("dataset", "augmentation", "training")

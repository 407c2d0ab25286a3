"""CLIP data: sources -> ``image``/``captions`` splits, checked captions and images, processor, transforms.

Every caption of an image is kept: training uses one per image per epoch, picked by a hash of (seed,
epoch, sample index) (``caption_picks``), so the pick depends on neither the batch, the rank, the world
size nor the worker, and a resumed run draws the same ones; evaluation embeds them all (the
any-of-k-captions protocol). Empty captions and unreadable images stop the run with one line naming
them, or are skipped and counted with ``[dataset] skip_bad_samples``; captions longer than the text
tower are truncated and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch

from ...config.experiment import ExperimentConfig
from ...data.images import decode_image, drop_unreadable
from ...data.loader import BatchFetchDataset
from ...data.registry import DATASETS
from ...data.splits import add_missing_splits
from ...data.transforms import image_ops
from ...errors import DataError
from ..base import TaskData
from . import sources, synthetic  # noqa: F401  (register the caption datasets)

logger = logging.getLogger(__name__)
DEFAULT_TEXT_LENGTH = 32  # tokens per caption for models built from a config
CAPTION_PICK = "caption_pick"  # batch key: which caption of each image trains (set by CaptionSampledDataset)
_MASK = (1 << 64) - 1


@dataclass
class ClipInfo:
    """What the model, the metrics and zero-shot evaluation need to know about the data."""

    image_size: int
    max_length: int
    label_names: list[str] = field(default_factory=list)


def _label_column(split: datasets.Dataset, wanted: str | None) -> str | None:
    name = wanted or "label"
    if name not in split.column_names:
        return None
    return name


def standardize(dsd: datasets.DatasetDict, config: ExperimentConfig) -> datasets.DatasetDict:
    """Keep ``image``, ``captions``, ``image_id`` and (for zero-shot) a class ``label``."""
    cfg = config.dataset
    out = {}
    for name, split in dsd.items():
        missing = [c for c in ("image", "captions") if c not in split.column_names]
        if missing:
            raise DataError(
                f"[dataset] {cfg.name}: split {name!r} has no column {missing[0]!r} "
                f"(columns: {', '.join(split.column_names)})"
            )
        if "image_id" not in split.column_names:
            split = split.add_column("image_id", [str(i) for i in range(len(split))])
        label = _label_column(split, cfg.label_column)
        keep = ["image", "captions", "image_id", *([label] if label else [])]
        split = split.select_columns(keep)
        if label and label != "label":
            split = split.rename_column(label, "label")
        if label and not isinstance(split.features["label"], datasets.ClassLabel):
            split = split.class_encode_column("label")
        out[name] = split
    return datasets.DatasetDict(out)


def _clean_captions(batch: dict[str, list]) -> dict[str, list]:
    cleaned = [[" ".join(str(c).split()) for c in (caps or [])] for caps in batch["captions"]]
    return {
        "captions": [[c for c in caps if c] for caps in cleaned],
        "empty": [sum(1 for c in caps if not c) for caps in cleaned],
    }


def check_captions(dsd: datasets.DatasetDict, skip: bool) -> tuple[datasets.DatasetDict, dict[str, int]]:
    """Whitespace-normalise captions; an empty one is an error naming its row, or dropped and counted."""
    out, dropped = {}, {}
    for name, split in dsd.items():
        split = split.map(_clean_captions, batched=True, desc=f"captions ({name})")
        empty = np.asarray(split["empty"])
        bad = np.flatnonzero(empty)
        if len(bad) and not skip:
            row = int(bad[0])
            raise DataError(
                f"{name} row {row} (image {split[row]['image_id']}): empty caption; fix it, "
                "or set [dataset] skip_bad_samples = true"
            )
        dropped[name] = int(empty.sum())
        split = split.remove_columns("empty")
        counts = np.asarray([len(c) for c in split["captions"]])
        if (counts == 0).any():
            split = split.select(np.flatnonzero(counts))
        out[name] = split
    return datasets.DatasetDict(out), {k: v for k, v in dropped.items() if v}


def check_images(dsd: datasets.DatasetDict, skip: bool) -> tuple[datasets.DatasetDict, dict[str, list[str]]]:
    """Unreadable or missing image files: one line naming the file and row, or skipped and listed."""
    out, skipped = {}, {}
    for name, split in dsd.items():
        if not isinstance(split.features["image"], datasets.Image) or len(split) == 0:
            out[name] = split
            continue
        split, _, files = drop_unreadable(split, name, skip)
        if files:
            skipped[name] = files
        out[name] = split
    return datasets.DatasetDict(out), skipped


def make_processor(config: ExperimentConfig, train: datasets.Dataset) -> Any:
    """The model's own processor for ``hf/`` models; else a tokenizer trained on the training captions."""
    from .processor import build_processor, train_tokenizer

    name = config.model.name
    if name.startswith("hf/"):
        from transformers import AutoProcessor

        from .models import hub_config

        hub_config(name[3:], config.model.trust_remote_code)  # refuses non-CLIP models first
        try:
            return AutoProcessor.from_pretrained(name[3:])
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"[model] {name}: no usable processor ({first})") from None
    from .models import built_image_size

    size = built_image_size(name, dict(config.model.kwargs), config.augmentation.resize)
    max_length = config.training.max_text_length or DEFAULT_TEXT_LENGTH
    captions = (c for caps in train["captions"] for c in caps)
    tokenizer = train_tokenizer(captions, config.training.tokenizer_vocab_size, max_length)
    return build_processor(tokenizer, int(size))


def text_limit(processor: Any, config: ExperimentConfig) -> int:
    """Padded caption length: ``max_text_length``, else the tokenizer's, within the text tower's positions."""
    wanted = config.training.max_text_length
    if not config.model.name.startswith("hf/"):
        return int(wanted or DEFAULT_TEXT_LENGTH)
    from .models import hub_config

    text = hub_config(config.model.name[3:], config.model.trust_remote_code).text_config
    positions = int(getattr(text, "max_position_embeddings", 0) or 10**6)
    if wanted and wanted > positions:
        raise DataError(
            f"[training] max_text_length = {wanted}: the text tower of {config.model.name} has {positions} positions"
        )
    own = getattr(processor.tokenizer, "model_max_length", None)
    return int(wanted or min(positions, own if own and own < 100_000 else positions))


def count_truncated(dsd: datasets.DatasetDict, tokenizer: Any, max_length: int) -> dict[str, int]:
    """Captions longer than ``max_length`` tokens (with start/end tokens), per split."""
    out = {}
    for name, split in dsd.items():
        captions = [c for caps in split["captions"] for c in caps]
        lengths = [len(ids) for ids in tokenizer(captions, truncation=False)["input_ids"]] if captions else []
        long = sum(1 for n in lengths if n > max_length)
        if long:
            logger.warning(
                "%s: %d of %d captions are longer than %d tokens and are truncated",
                name,
                long,
                len(captions),
                max_length,
            )
            out[name] = long
    return out


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def caption_picks(seed: int, epoch: int, indices: Any, counts: Any) -> list[int]:
    """For each sample, which of its ``counts`` captions trains in ``epoch``: a hash of (seed, epoch,
    global sample index) alone, so 2 ranks x B and 1 process x 2B (or any worker/resume) pick alike."""
    base = _mix64(_mix64((int(seed) & _MASK) ^ 0x9E3779B97F4A7C15) ^ (int(epoch) & _MASK))
    return [_mix64(base ^ (int(i) & _MASK)) % int(n) for i, n in zip(indices, counts)]


class CaptionSampledDataset(BatchFetchDataset):
    """The training split's batch loader: each batch also carries ``caption_pick`` (``caption_picks`` of
    the loader's seed, its epoch and the sample indices), which the training transform follows."""

    def fetch(self, indices: list[int]) -> dict[str, Any]:
        batch = super().fetch(indices)
        batch[CAPTION_PICK] = caption_picks(self.seed, self.epoch, indices, map(len, batch["captions"]))
        return batch


@dataclass
class ClipTransform:
    """Batch transform: images -> ``pixel_values``; train: one caption per image (the batch's
    ``caption_pick``, else the first) -> ``input_ids``; eval: all captions -> ``caption_input_ids``/
    ``caption_attention_mask``/``caption_owner``."""

    processor: Any
    max_length: int
    train: bool = False
    augmentation: Any = None
    _random: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._random = image_ops(self.augmentation, 3) if self.train and self.augmentation else None

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.processor.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def __call__(self, batch: dict[str, list]) -> dict[str, Any]:
        images = [decode_image(v, 3) for v in batch["image"]]
        if self._random is not None:
            images = [self._random(t) for t in images]
        out: dict[str, Any] = {
            "pixel_values": self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        }
        captions = batch["captions"]
        if self.train:
            picks = batch.get(CAPTION_PICK) or [0] * len(captions)
            tokens = self._tokens([str(caps[k]) for caps, k in zip(captions, picks)])
            out["input_ids"], out["attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
        else:
            flat = [c for caps in captions for c in caps]
            tokens = self._tokens(flat)
            out["caption_input_ids"] = tokens["input_ids"]
            out["caption_attention_mask"] = tokens["attention_mask"]
            out["caption_owner"] = torch.repeat_interleave(
                torch.arange(len(captions)), torch.as_tensor([len(c) for c in captions])
            )
            if "label" in batch:
                out["class_labels"] = torch.as_tensor(batch["label"], dtype=torch.long)
        return out


def prepare(config: ExperimentConfig) -> TaskData:
    """Build, check and split the configured dataset; the processor; attach the transforms."""
    cfg = config.dataset
    source = DATASETS.get(cfg.name)(cfg)
    dsd = standardize(source.splits, config)
    dsd, empty = check_captions(dsd, cfg.skip_bad_samples)
    dsd, bad_images = check_images(dsd, cfg.skip_bad_samples)
    dsd = add_missing_splits(dsd, cfg, config.basic.seed, stratify_by=None)
    if len(dsd["train"]) == 0:
        raise DataError(f"[dataset] {cfg.name}: the train split is empty")
    processor = make_processor(config, dsd["train"])
    max_length = text_limit(processor, config)
    truncated = count_truncated(dsd, processor.tokenizer, max_length)
    crop = processor.image_processor.crop_size or processor.image_processor.size
    image_size = int(crop.get("height") or crop.get("shortest_edge"))
    label = dsd["train"].features.get("label")
    info = ClipInfo(
        image_size, max_length, list(label.names) if isinstance(label, datasets.ClassLabel) else []
    )
    report = {
        "dataset": {
            "name": cfg.name,
            "images": {k: len(v) for k, v in dsd.items()},
            "captions": {k: int(sum(len(c) for c in v["captions"])) for k, v in dsd.items()},
            "image_size": image_size,
            "max_text_length": max_length,
        },
        "truncated_captions": truncated,
        "skipped_empty_captions": empty,
        "skipped_samples": {k: len(v) for k, v in bad_images.items()},
        "skipped_files": bad_images,
    }
    for name, split in dsd.items():
        split.set_transform(
            ClipTransform(processor, max_length, train=name == "train", augmentation=config.augmentation)
        )
    return TaskData(dsd, info, processor, report)

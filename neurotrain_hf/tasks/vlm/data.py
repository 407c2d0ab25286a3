"""VLM data: sources -> checked conversations, the processor, length checks, train / eval transforms.

Every source gives ``image``, ``messages`` (role + text with ``<image>`` markers), ``answer_type`` and
``sample_id`` (``sources.py``, ``sources_vqa.py``, ``synthetic.py``). Bad rows (no assistant turn, a marker without an image or an image without
a marker, an empty answer, a missing or corrupt image, image tokens beyond ``max_length``) stop the run
with one line naming the row, or are skipped and counted with ``[dataset] skip_bad_samples``. Text after
the image tokens that does not fit ``max_length`` is cut and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ...config.experiment import ExperimentConfig
from ...data.images import decode_image, drop_unreadable
from ...data.registry import DATASETS
from ...data.splits import add_missing_splits
from ...errors import DataError
from ..base import TaskData
from . import sources, synthetic  # noqa: F401  (register the VLM datasets)
from .labels import Encoded, encode_batch, pad

logger = logging.getLogger(__name__)
MARKER = "<image>"
CHECK_BATCH = 64


@dataclass
class VLMInfo:
    """What the model, the trainer and the Tester need to know about the data."""

    max_length: int
    image_size: int | None = None
    patch_size: int | None = None
    counts: dict[str, int] = field(default_factory=dict)


def to_chat(messages: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Role + text with ``<image>`` markers -> the structured content chat templates take."""
    out = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        pieces = str(message["content"]).split(MARKER)
        for k, piece in enumerate(pieces):
            if k:
                parts.append({"type": "image"})
            text = piece.strip() if len(pieces) > 1 else piece
            if text:
                parts.append({"type": "text", "text": text})
        out.append({"role": message["role"], "content": parts})
    return out


def last_turns(messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], str, str]:
    """(the conversation before the last assistant turn, the question, the reference answer)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    question = next((m["content"] for m in reversed(messages[:last]) if m["role"] == "user"), "")
    return (
        list(messages[:last]),
        " ".join(question.replace(MARKER, " ").split()),
        str(messages[last]["content"]).strip(),
    )


def row_problem(messages: list[dict[str, str]], has_image: bool) -> str | None:
    """Why a conversation cannot train (None: it can)."""
    roles = [m["role"] for m in messages]
    if "assistant" not in roles:
        return "the conversation has no assistant turn"
    if any(not str(m["content"]).strip() for m in messages if m["role"] == "assistant"):
        return "an assistant turn (answer) is empty"
    markers = sum(str(m["content"]).count(MARKER) for m in messages)
    if markers and not has_image:
        return f"the text has an {MARKER} marker but the row has no image"
    if has_image and not markers:
        return f"the row has an image but no {MARKER} marker in its text"
    if markers > 1:
        return f"{markers} {MARKER} markers for one image"
    return None


def image_nulls(split: datasets.Dataset) -> np.ndarray:
    """Which rows have no image, read from Arrow's validity bits (no image is decoded or listed)."""
    column = split.select_columns(["image"]).with_format("arrow")[:]["image"]
    return column.is_null().to_numpy(zero_copy_only=False).astype(bool)


def image_rows(split: datasets.Dataset, start: int, stop: int) -> list[Any]:
    """The image column of rows ``[start, stop)``; array images stay numpy (as Python lists an embedded
    48 px image costs milliseconds per row)."""
    column = split.select_columns(["image"])
    if isinstance(split.features["image"], (datasets.Array2D, datasets.Array3D)):
        column = column.with_format("numpy")
    return list(column[start:stop]["image"])


def check_rows(dsd: datasets.DatasetDict, skip: bool) -> tuple[datasets.DatasetDict, dict[str, int]]:
    """Refuse (or drop and count) conversations that cannot train, naming the first bad row."""
    out, dropped = {}, {}
    for name, split in dsd.items():
        has_image = (~image_nulls(split)).tolist()
        bad = []
        for i, (messages, image) in enumerate(zip(split["messages"], has_image)):
            problem = row_problem(messages, image)
            if problem is None:
                continue
            if not skip:
                raise DataError(
                    f"{name} row {i} (sample {split[i]['sample_id']}): {problem}; fix it, or set [dataset] "
                    "skip_bad_samples = true"
                )
            bad.append(i)
        if bad:
            logger.warning("%s: skipped %d conversations that cannot train", name, len(bad))
            split = split.select(np.setdiff1d(np.arange(len(split)), bad))
            dropped[name] = len(bad)
        out[name] = split
    return datasets.DatasetDict(out), dropped


def check_images(dsd: datasets.DatasetDict, skip: bool) -> tuple[datasets.DatasetDict, dict[str, list[str]]]:
    """Missing or unreadable image files: one line naming the file and row, or skipped and listed."""
    out, skipped = {}, {}
    for name, split in dsd.items():
        if not isinstance(split.features["image"], datasets.Image) or len(split) == 0:
            out[name] = split
            continue
        with_image = np.flatnonzero(~image_nulls(split))
        if len(with_image) == len(split):
            split, _, files = drop_unreadable(split, name, skip)
        else:  # text-only rows have nothing to scan
            kept, _, files = drop_unreadable(split.select(with_image), name, skip)
            text_only = split.select(np.setdiff1d(np.arange(len(split)), with_image))
            split = datasets.concatenate_datasets([kept, text_only]) if files else split
        if files:
            skipped[name] = files
        out[name] = split
    return datasets.DatasetDict(out), skipped


def load_image(value: Any) -> np.ndarray | None:
    """A row's image as the processor takes it: HWC uint8 RGB, decoded by the project's one decoder
    (upright, any bit depth scaled to 8 bits, grey or palette as RGB), whatever the source (file, bytes,
    PIL image, array)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3 and value.shape[-1] == 3:
        return value
    pixels = decode_image(str(value) if isinstance(value, Path) else value, 3)
    if pixels.is_floating_point():
        pixels = (pixels.clamp(0, 1) * 255).round()
    return pixels.permute(1, 2, 0).numpy().astype(np.uint8)


def encode_rows(
    processor: Any, rows: dict[str, list], names: list[str]
) -> tuple[list[Encoded], dict[str, Any]]:
    conversations = [to_chat(m) for m in rows["messages"]]
    images = [load_image(v) for v in rows["image"]]
    return encode_batch(processor, conversations, images, names)


def check_lengths(
    dsd: datasets.DatasetDict, processor: Any, max_length: int, skip: bool
) -> tuple[datasets.DatasetDict, dict[str, int], dict[str, int]]:
    """Every row encoded once: image tokens beyond ``max_length`` (or no answer token left within it) are
    refused naming the row, or skipped and counted; longer text is counted as truncated."""
    out, refused, truncated = {}, {}, {}
    for name, split in dsd.items():
        bad, cut = [], 0
        for start in range(0, len(split), CHECK_BATCH):
            rows = split.select_columns(["messages", "sample_id"])[start : start + CHECK_BATCH]
            rows["image"] = image_rows(split, start, start + CHECK_BATCH)
            where = [f"{name} row {start + k} (sample {sid})" for k, sid in enumerate(rows["sample_id"])]
            encoded, _ = encode_rows(processor, rows, where)
            for k, enc in enumerate(encoded):
                problem = None
                if enc.image_end > max_length:
                    problem = (
                        f"its image tokens end at position {enc.image_end}, beyond max_length {max_length}"
                    )
                elif len(enc.input_ids) > max_length:
                    if not any(label != -100 for label in enc.labels[:max_length]):
                        problem = (
                            f"no answer token fits in max_length {max_length} ({len(enc.input_ids)} tokens)"
                        )
                    else:
                        cut += 1
                if problem is None:
                    continue
                if not skip:
                    raise DataError(
                        f"{where[k]}: {problem}; raise [training] max_length, or set [dataset] "
                        "skip_bad_samples = true (image tokens are never cut)"
                    )
                bad.append(start + k)
        if bad:
            split = split.select(np.setdiff1d(np.arange(len(split)), bad))
            refused[name] = len(bad)
        if cut:
            logger.warning(
                "%s: %d conversations are longer than max_length %d: their end is cut", name, cut, max_length
            )
            truncated[name] = cut
        out[name] = split
    return datasets.DatasetDict(out), refused, truncated


@dataclass
class VLMTransform:
    """Batch transform: conversations -> right-padded ``input_ids``/``attention_mask``/``labels`` cut to
    ``max_length`` and the processor's image outputs; evaluation adds the left-padded prompt before the last
    answer (``prompt_input_ids``/``prompt_attention_mask``) and the question, reference and answer type."""

    processor: Any
    max_length: int
    train: bool = False

    def __call__(self, batch: dict[str, list]) -> dict[str, Any]:
        names = [f"sample {sid}" for sid in batch["sample_id"]]
        encoded, extra = encode_rows(self.processor, batch, names)
        pad_id = self.processor.tokenizer.pad_token_id or 0
        out: dict[str, Any] = {**pad(encoded, pad_id), **extra}
        if out["input_ids"].shape[1] > self.max_length:
            for key in ("input_ids", "attention_mask", "labels"):
                out[key] = out[key][:, : self.max_length]
        if self.train:
            return out
        prompts, questions, answers = zip(*(last_turns(m) for m in batch["messages"]))
        prompt_ids = prompt_tokens(
            self.processor, [to_chat(p) for p in prompts], [load_image(v) for v in batch["image"]]
        )
        left = pad([Encoded(ids, [-100] * len(ids), 0) for ids in prompt_ids], pad_id, left=True)
        out["prompt_input_ids"], out["prompt_attention_mask"] = left["input_ids"], left["attention_mask"]
        out["question"], out["answer"] = list(questions), list(answers)
        out["answer_type"] = [str(t or "") for t in batch["answer_type"]]
        return out


def prompt_tokens(processor: Any, conversations: list[list[dict]], images: list[Any]) -> list[list[int]]:
    """Token ids of each conversation rendered with the generation prompt (image tokens expanded)."""
    texts = [
        processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations
    ]
    kwargs: dict[str, Any] = {"text": texts, "add_special_tokens": False}
    if any(im is not None for im in images):
        kwargs["images"] = [im for im in images if im is not None]
    out = processor(**kwargs, padding=True, padding_side="right", return_tensors="pt")
    return [ids[mask.bool()].tolist() for ids, mask in zip(out["input_ids"], out["attention_mask"])]


def make_processor(config: ExperimentConfig, train: datasets.Dataset) -> Any:
    """The model's own processor (``hf/``); else a word-level tokenizer trained on the training text and
    an image processor sized for the vision tower (a CLIP run's, when ``vision_tower`` names one)."""
    name = config.model.name
    if name.startswith("hf/"):
        from transformers import AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(
                name[3:], trust_remote_code=config.model.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"[model] {name}: no usable processor ({first})") from None
        if getattr(processor, "chat_template", None) is None:
            raise DataError(
                f"[model] {name}: its processor has no chat template to render conversations with"
            )
        return processor
    from .models import clip_folder, vision_settings
    from .processor import build_processor, train_tokenizer

    args = config.training
    image_size, patch_size = vision_settings(dict(config.model.kwargs), args.vision_tower)
    texts = (str(m["content"]).replace("<image>", " ") for ms in train["messages"] for m in ms)
    tokenizer = train_tokenizer(texts, args.tokenizer_vocab_size, args.max_length)
    image_processor = None
    if args.vision_tower:
        from transformers import AutoImageProcessor

        image_processor = AutoImageProcessor.from_pretrained(str(clip_folder(args.vision_tower)))
    return build_processor(tokenizer, image_size, patch_size, image_processor)


def prepare(config: ExperimentConfig) -> TaskData:
    """Build, check and split the configured dataset; the processor; length checks; attach the transforms."""
    cfg, args = config.dataset, config.training
    source = DATASETS.get(cfg.name)(cfg)
    dsd = source.splits
    if cfg.max_samples:
        dsd = datasets.DatasetDict({k: v.select(range(min(len(v), cfg.max_samples))) for k, v in dsd.items()})
    dsd, bad_rows = check_rows(dsd, cfg.skip_bad_samples)
    dsd, bad_images = check_images(dsd, cfg.skip_bad_samples)
    dsd = add_missing_splits(dsd, cfg, config.basic.seed, stratify_by=None)
    if len(dsd["train"]) == 0:
        raise DataError(f"[dataset] {cfg.name}: the train split is empty")
    processor = make_processor(config, dsd["train"])
    dsd, too_long, truncated = check_lengths(dsd, processor, args.max_length, cfg.skip_bad_samples)
    info = VLMInfo(args.max_length, counts={k: len(v) for k, v in dsd.items()})
    report = {
        "dataset": {"name": cfg.name, "conversations": info.counts, "max_length": args.max_length},
        "skipped_conversations": bad_rows,
        "skipped_image_overflow": too_long,
        "truncated_conversations": truncated,
        "skipped_samples": {k: len(v) for k, v in bad_images.items()},
        "skipped_files": bad_images,
    }
    for name, split in dsd.items():
        split.set_transform(VLMTransform(processor, args.max_length, train=name == "train"))
    return TaskData(dsd, info, processor, report)

"""Conversations -> token ids and labels, masked by role from the rendered turns, not by template tags.

A conversation is rendered once with the processor's chat template. Each assistant turn's characters are
found by rendering the conversation up to that turn twice: before it (with the generation prompt) and
through it; the characters between are the answer as the template writes it (its end-of-turn token
included). Tokens starting inside those spans are supervised; everything else (system and user turns,
role headers, image, padding and tokenizer-added tokens) is -100. Templates without ``{% generation %}``
tags mask the same way. Image tokens are then matched between the plain tokenisation and the processor's
(which expands each image marker into the image's feature tokens): the two must agree on every other
token, so the labels line up with the ids the model sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import DataError

IGNORE = -100
TEXT_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


@dataclass
class Encoded:
    """One conversation as the model sees it: ids, labels, and where its image tokens end."""

    input_ids: list[int]
    labels: list[int]
    image_end: int  # one past the last image token (0: none)

    @property
    def supervised(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def render(processor: Any, messages: Sequence[dict], generation_prompt: bool = False) -> str:
    return processor.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=generation_prompt
    )


def assistant_spans(
    processor: Any, messages: Sequence[dict], where: str = ""
) -> tuple[str, list[tuple[int, int]]]:
    """(rendered conversation, character spans of its assistant turns)."""
    text = render(processor, messages)
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(processor, messages[:k], generation_prompt=True) if k else ""
        through = render(processor, messages[: k + 1])
        if not (through.startswith(before) and text.startswith(through)):
            raise DataError(
                f"{where}: the chat template does not render turn by turn (turn {k} changes the text "
                "before it), so the assistant tokens cannot be located; use a template that appends turns"
            )
        spans.append((len(before), len(through)))
    return text, spans


def image_token_id(processor: Any) -> int | None:
    """The id the processor expands an image marker into (None: the processor has no image token)."""
    tokenizer = processor.tokenizer
    token = getattr(processor, "image_token", None) or getattr(tokenizer, "image_token", None)
    value = getattr(processor, "image_token_id", None)
    if value is None and token is not None:
        value = tokenizer.convert_tokens_to_ids(token)
    return value


def supervised_flags(
    tokenizer: Any, text: str, spans: Sequence[tuple[int, int]]
) -> tuple[list[int], list[bool]]:
    """The plain tokenisation of ``text`` (no added special tokens) and, per token, whether it starts
    inside an assistant span."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    flags = [any(a <= start < b for a, b in spans) and end > start for start, end in enc["offset_mapping"]]
    return list(enc["input_ids"]), flags


def align_labels(
    plain_ids: Sequence[int], flags: Sequence[bool], ids: Sequence[int], image_id: int | None, where: str
) -> Encoded:
    """Labels for the processor's ids from the plain tokenisation's flags (image tokens never supervised)."""
    keep = [(t, f) for t, f in zip(plain_ids, flags) if t != image_id]
    labels, image_end, k = [], 0, 0
    for pos, token in enumerate(ids):
        if token == image_id:
            labels.append(IGNORE)
            image_end = pos + 1
            continue
        if k >= len(keep) or keep[k][0] != token:
            raise DataError(
                f"{where}: the processor's tokens differ from the chat text's beyond the image tokens "
                f"(position {pos}); cannot place the labels"
            )
        labels.append(token if keep[k][1] else IGNORE)
        k += 1
    if k != len(keep):
        raise DataError(f"{where}: the processor dropped {len(keep) - k} tokens of the chat text")
    return Encoded(list(ids), labels, image_end)


def encode_batch(
    processor: Any, conversations: Sequence[Sequence[dict]], images: Sequence[Any], where: Sequence[str]
) -> tuple[list[Encoded], dict[str, Any]]:
    """Each conversation's ids and labels, and the processor's image outputs for the batch (``pixel_values``,
    ``image_sizes``, ``image_grid_thw``, ...) as tensors."""
    texts, flags_of = [], []
    for messages, name in zip(conversations, where):
        text, spans = assistant_spans(processor, messages, name)
        texts.append(text)
        flags_of.append(supervised_flags(processor.tokenizer, text, spans))
    kwargs: dict[str, Any] = {"text": texts, "add_special_tokens": False}
    if any(im is not None for im in images):
        kwargs["images"] = [im for im in images if im is not None]
    out = processor(**kwargs, padding=True, padding_side="right", return_tensors="pt")
    image_id = image_token_id(processor)
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(out["input_ids"], out["attention_mask"])]
    encoded = [
        align_labels(plain, flags, ids, image_id, name)
        for (plain, flags), ids, name in zip(flags_of, rows, where)
    ]
    extra = {k: v for k, v in out.items() if k not in TEXT_OUTPUTS and torch.is_tensor(v)}
    return encoded, extra


def pad(
    encoded: Sequence[Encoded], pad_id: int, length: int | None = None, left: bool = False
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` padded to the longest (or ``length``), padding -100."""
    width = length or max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE)
    mask = torch.zeros_like(ids)
    for row, e in enumerate(encoded):
        n = min(len(e.input_ids), width)
        span = slice(width - n, width) if left else slice(0, n)
        ids[row, span] = torch.as_tensor(e.input_ids[:n])
        labels[row, span] = torch.as_tensor(e.labels[:n])
        mask[row, span] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}

"""The VLM task's metric family: generated answers scored against the references (``metrics.vqa``)."""

from __future__ import annotations

from collections.abc import Sequence

from ...metrics.registry import register_family
from ...metrics.vqa import VQA_METRICS, VQAAccumulator


@register_family("vqa", VQA_METRICS, reports=("closed_count", "open_count"))
def vqa_family(names: Sequence[str], **_: object) -> VQAAccumulator:
    return VQAAccumulator(names)

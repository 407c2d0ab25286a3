"""The CLIP task's metric family: image<->text recall@k and zero-shot accuracy from per-image embeddings
(``metrics.retrieval.RetrievalAccumulator``, also behind the ``neurotrain/clip_retrieval`` module)."""

from __future__ import annotations

from collections.abc import Sequence

from ...metrics.registry import register_family


@register_family(
    "retrieval",
    ("clip_retrieval", "zero_shot_accuracy"),
    reports=("mean_recall", "image_to_text_recall@*", "text_to_image_recall@*"),
)
def retrieval_family(names: Sequence[str], k_values=(1, 5, 10), **_: object):
    from ...metrics.retrieval import RetrievalAccumulator

    return RetrievalAccumulator(k_values)

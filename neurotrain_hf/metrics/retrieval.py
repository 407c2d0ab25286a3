"""CLIP retrieval recall@k (the CLIP-paper protocol) from a text x image similarity matrix.

``predictions[i]`` holds text i's similarity to every image; ``references[i]`` is the index of text
i's image (several texts may share an image). Text->image recall@k: the fraction of texts whose image
ranks in their top k. Image->text recall@k: the fraction of images (those with at least one text) for
which ANY of their texts ranks in the image's top k. Ties rank in favour of the lower index, as a
stable sort does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .common import check_nonempty, to_numpy


def _rank_of(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of column ``target[i]`` in row i when sorted by descending score (stable)."""
    own = scores[np.arange(len(scores)), target][:, None]
    cols = np.arange(scores.shape[1])[None, :]
    return ((scores > own) | ((scores == own) & (cols < target[:, None]))).sum(axis=1)


def compute_clip_retrieval(
    predictions, references: Sequence[int], k_values: Sequence[int] = (1, 5, 10)
) -> dict[str, Any]:
    check_nonempty(predictions, references)
    sims = to_numpy(predictions, "predictions").astype(np.float64)
    if sims.ndim != 2:
        raise ValueError(f"predictions must be (num_texts, num_images) similarities, got shape {sims.shape}")
    if not np.isfinite(sims).all():
        bad = int(np.argwhere(~np.isfinite(sims))[0][0])
        raise ValueError(f"sample {bad}: similarities contain NaN or inf")
    refs = to_numpy(references, "references").astype(np.int64).reshape(-1)
    bad = np.flatnonzero((refs < 0) | (refs >= sims.shape[1]))
    if bad.size:
        raise ValueError(
            f"sample {int(bad[0])}: image index {int(refs[bad[0]])} outside [0, {sims.shape[1]})"
        )
    t2i_rank = _rank_of(sims, refs)
    images = np.unique(refs)
    by_image = sims.T[images]  # (num_images_with_text, num_texts)
    best_rank = np.full(len(images), np.iinfo(np.int64).max)
    pos = np.searchsorted(images, refs)
    ranks = _rank_of(by_image[pos], np.arange(len(refs)))  # rank of each text in its own image's list
    np.minimum.at(best_rank, pos, ranks)
    matched = float(sims[np.arange(len(refs)), refs].mean())
    return _summary(t2i_rank, best_rank, k_values, matched)


def _summary(
    t2i_rank: np.ndarray, best_rank: np.ndarray, k_values: Sequence[int], matched: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in k_values:
        out[f"text_to_image_recall@{k}"] = float((t2i_rank < k).mean())
        out[f"image_to_text_recall@{k}"] = float((best_rank < k).mean())
    out["mean_recall"] = float(np.mean([v for v in out.values()]))
    r1_t = float((t2i_rank < 1).mean())
    r1_i = float((best_rank < 1).mean())
    out["clip_accuracy"] = (r1_t + r1_i) / 2
    out["mean_matched_similarity"] = matched
    return out


def retrieval_from_embeddings(
    text_embeds: np.ndarray,
    image_embeds: np.ndarray,
    owner: np.ndarray,
    k_values: Sequence[int] = (1, 5, 10),
    chunk: int = 256,
) -> dict[str, Any]:
    """``compute_clip_retrieval`` of ``text @ image.T`` (cosine similarities), in row chunks.

    The same ranks without the full (texts x images) matrix: memory ``chunk x (texts + images)``,
    so a 5k-image / 25k-caption test set needs megabytes, not gigabytes.
    """
    text = _unit(text_embeds)
    image = _unit(image_embeds)
    owner = np.asarray(owner, dtype=np.int64)
    if len(owner) != len(text):
        raise ValueError(f"{len(text)} text embeddings but {len(owner)} owners")
    t2i_rank = np.concatenate(
        [_rank_of(text[i : i + chunk] @ image.T, owner[i : i + chunk]) for i in range(0, len(text), chunk)]
    )
    best_rank = np.full(len(image), np.iinfo(np.int64).max)
    order = np.argsort(owner, kind="stable")
    for start in range(0, len(image), chunk):
        lo, hi = np.searchsorted(owner[order], [start, min(start + chunk, len(image))])
        texts = order[lo:hi]
        if not len(texts):
            continue
        rows = image[owner[texts]] @ text.T  # each own (image, text) pair: the image's scores over texts
        np.minimum.at(best_rank, owner[texts], _rank_of(rows, texts))
    has_text = np.isin(np.arange(len(image)), owner)
    matched = float(np.einsum("ij,ij->i", text, image[owner]).mean())
    return _summary(t2i_rank, best_rank[has_text], k_values, matched)


def _unit(x: Any) -> np.ndarray:
    x = to_numpy(x).astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class RetrievalAccumulator:
    """Streaming CLIP evaluation: per-image embeddings (and their captions') kept, scored once.

    ``update(predictions, references)``: ``predictions`` holds ``image_embeds`` (B, D), ``text_embeds``
    (a list of B arrays, each (captions, D)) and optionally ``zero_shot`` logits (B, classes);
    ``references`` holds ``labels`` (B,) or None. Ranks merge by extending the lists in rank order.
    """

    STATE = ("image_embeds", "text_embeds", "zero_shot_correct", "zero_shot_count")

    def __init__(self, k_values: Sequence[int] = (1, 5, 10)) -> None:
        self.k_values = tuple(k_values)
        self.reset()

    def reset(self) -> None:
        self.image_embeds: list[np.ndarray] = []
        self.text_embeds: list[np.ndarray] = []
        self.zero_shot_correct = 0
        self.zero_shot_count = 0

    def update(self, predictions: dict[str, Any], references: dict[str, Any] | None) -> None:
        self.image_embeds.append(to_numpy(predictions["image_embeds"]).astype(np.float32))
        self.text_embeds.extend(to_numpy(t).astype(np.float32) for t in predictions["text_embeds"])
        labels = (references or {}).get("labels")
        logits = predictions.get("zero_shot")
        if labels is not None and logits is not None:
            labels = to_numpy(labels).reshape(-1)
            self.zero_shot_correct += int((to_numpy(logits).argmax(axis=1) == labels).sum())
            self.zero_shot_count += len(labels)

    def compute(self, keys: Sequence[str] = ("clip_retrieval",)) -> dict[str, float]:
        out: dict[str, float] = {}
        if "clip_retrieval" in keys and self.image_embeds:
            image = np.concatenate(self.image_embeds)
            owner = np.repeat(np.arange(len(self.text_embeds)), [len(t) for t in self.text_embeds])
            text = np.concatenate(self.text_embeds) if len(owner) else np.zeros((0, image.shape[1]))
            if len(owner):
                out.update(retrieval_from_embeddings(text, image, owner, self.k_values))
        if "zero_shot_accuracy" in keys and self.zero_shot_count:
            out["zero_shot_accuracy"] = self.zero_shot_correct / self.zero_shot_count
        return out

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
    out: dict[str, Any] = {}
    for k in k_values:
        out[f"text_to_image_recall@{k}"] = float((t2i_rank < k).mean())
        out[f"image_to_text_recall@{k}"] = float((best_rank < k).mean())
    r1_t = float((t2i_rank < 1).mean())
    r1_i = float((best_rank < 1).mean())
    out["clip_accuracy"] = (r1_t + r1_i) / 2
    out["mean_matched_similarity"] = float(sims[np.arange(len(refs)), refs].mean())
    return out

"""BLEU through sacrebleu (not re-implemented): corpus or mean sentence BLEU, cumulative BLEU-1..4.

References may vary in number per prediction: shorter lists are padded with ``None``, which sacrebleu
reads as "no reference". Scores are returned in [0, 1] (sacrebleu's divided by 100).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


def _streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-prediction reference lists -> sacrebleu's reference streams (padded with None)."""
    width = max(len(r) for r in references)
    return [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]


def compute_bleu(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    max_order: int = 4,
    tokenize: str = "13a",
    smooth_method: str = "exp",
    lowercase: bool = False,
    sentence_level: bool = False,
) -> dict[str, Any]:
    from sacrebleu.metrics import BLEU

    if len(predictions) == 0:
        raise ValueError("predictions is empty; expected at least one sentence")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str):
            raise ValueError(f"sample {i}: prediction must be a string, got {type(pred).__name__}")
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"sample {i}: references must be a non-empty list of strings")
    streams = _streams(references)
    # One pass collects n-gram statistics up to the largest order needed; each cumulative BLEU-n is then
    # sacrebleu's own BLEU.compute_bleu on the first n orders (identical to a separate pass per n).
    top = max(4, max_order)
    # smoothing "none" leaves the returned counts raw (add-k would have added its constant to them)
    bleu = BLEU(
        max_ngram_order=top,
        tokenize=tokenize,
        smooth_method="none",
        lowercase=lowercase,
        effective_order=sentence_level,
    )
    smooth_value = BLEU(smooth_method=smooth_method).smooth_value

    def from_stats(stats, n: int):
        # copies: compute_bleu adds the add-k constant to its arguments in place
        return BLEU.compute_bleu(
            list(stats.counts[:n]),
            list(stats.totals[:n]),
            stats.sys_len,
            stats.ref_len,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            effective_order=sentence_level,
            max_ngram_order=n,
        )

    corpus = bleu.corpus_score(list(predictions), streams)
    if sentence_level:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sentences = [bleu.sentence_score(p, list(r)) for p, r in zip(predictions, references)]
        score = {
            n: float(np.mean([from_stats(st, n).score for st in sentences])) / 100
            for n in {1, 2, 3, 4, max_order}
        }
    else:
        score = {n: from_stats(corpus, n).score / 100 for n in {1, 2, 3, 4, max_order}}
    main = from_stats(corpus, max_order)
    out: dict[str, Any] = {"bleu": score[max_order], **{f"bleu_{n}": score[n] for n in range(1, 5)}}
    out.update(
        precisions=[p / 100 for p in main.precisions],
        brevity_penalty=main.bp,
        length_ratio=main.ratio,
        translation_length=main.sys_len,
        reference_length=main.ref_len,
    )
    return out

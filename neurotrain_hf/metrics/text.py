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


def compute_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]], max_order: int = 4,
                 tokenize: str = "13a", smooth_method: str = "exp", lowercase: bool = False,
                 sentence_level: bool = False) -> dict[str, Any]:
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

    def metric(order: int) -> BLEU:
        return BLEU(max_ngram_order=order, tokenize=tokenize, smooth_method=smooth_method, lowercase=lowercase,
                    effective_order=sentence_level)

    def score(order: int) -> float:
        bleu = metric(order)
        if not sentence_level:
            return bleu.corpus_score(list(predictions), streams).score / 100
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(np.mean([bleu.sentence_score(p, list(r)).score for p, r in zip(predictions, references)])) / 100

    corpus = metric(max_order).corpus_score(list(predictions), streams)
    out: dict[str, Any] = {"bleu": score(max_order)}
    for n in range(1, 5):
        out[f"bleu_{n}"] = out["bleu"] if n == max_order else score(n)
    out.update(precisions=[p / 100 for p in corpus.precisions], brevity_penalty=corpus.bp, length_ratio=corpus.ratio,
               translation_length=corpus.sys_len, reference_length=corpus.ref_len)
    return out

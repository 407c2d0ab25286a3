"""Answer scoring for visual question answering: closed (yes/no) accuracy, open-answer token recall and
F1, exact match and BLEU, with every question in its denominator.

Answers are compared after ``normalize`` (lower case, punctuation and the articles a/an/the removed,
whitespace collapsed). A closed answer is read by whole words: "yes" or "no" must be a word of the answer
and the other must not, so "normal", "note" or "not sure" are not "no", and an answer naming both or
neither is wrong (LLaVA-Med's evaluation counted "normal" as "no" and dropped unparsed answers from the
denominator). Closed questions with other answers ("left", "CT") are right only on an exact match.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

_PUNCT = re.compile(r"[^\w\s]")
_ARTICLES = {"a", "an", "the"}
CLOSED, OPEN = "closed", "open"


def normalize(text: str) -> str:
    """Lower case, punctuation to spaces, articles dropped, whitespace collapsed."""
    words = _PUNCT.sub(" ", str(text).lower()).split()
    return " ".join(w for w in words if w not in _ARTICLES)


def yes_no(text: str) -> str | None:
    """ "yes" / "no" when exactly one of them is a whole word of the answer; else None."""
    words = set(normalize(text).split())
    has_yes, has_no = "yes" in words, "no" in words
    if has_yes == has_no:
        return None
    return "yes" if has_yes else "no"


def closed_correct(prediction: str, reference: str) -> bool:
    """A yes/no reference needs the same whole-word yes/no answer; any other needs an exact match."""
    wanted = normalize(reference)
    if wanted in ("yes", "no"):
        return yes_no(prediction) == wanted
    return normalize(prediction) == wanted


def token_scores(prediction: str, reference: str) -> tuple[float, float]:
    """(recall, F1) of the reference's words in the prediction, counting repeats (SQuAD's bag of words)."""
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not ref:
        return float(not pred), float(not pred)
    common = sum((Counter(pred) & Counter(ref)).values())
    recall = common / len(ref)
    precision = common / len(pred) if pred else 0.0
    f1 = 2 * precision * recall / (precision + recall) if common else 0.0
    return recall, f1


def answer_type(kind: str | None, reference: str) -> str:
    """The given type (closed/open), else closed exactly when the reference is yes or no."""
    kind = str(kind or "").strip().lower()
    if kind in (CLOSED, OPEN):
        return kind
    return CLOSED if normalize(reference) in ("yes", "no") else OPEN


def score_answers(
    predictions: Sequence[str], references: Sequence[str], answer_types: Sequence[str | None] | None = None
) -> dict[str, Any]:
    """Every metric over all questions; ``closed_count`` / ``open_count`` say how many each mean covers."""
    from .text import compute_bleu

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    types = [answer_type(k, r) for k, r in zip(answer_types or [None] * len(references), references)]
    closed = [closed_correct(p, r) for p, r, k in zip(predictions, references, types) if k == CLOSED]
    opened = [token_scores(p, r) for p, r, k in zip(predictions, references, types) if k == OPEN]
    exact = [normalize(p) == normalize(r) for p, r in zip(predictions, references)]
    out: dict[str, Any] = {
        "closed_accuracy": sum(closed) / len(closed) if closed else float("nan"),
        "open_recall": sum(r for r, _ in opened) / len(opened) if opened else float("nan"),
        "open_f1": sum(f for _, f in opened) / len(opened) if opened else float("nan"),
        "exact_match": sum(exact) / len(exact) if exact else float("nan"),
        "closed_count": len(closed),
        "open_count": len(opened),
    }
    if predictions:
        out["bleu"] = compute_bleu(
            list(predictions), [[r] for r in references], sentence_level=True, lowercase=True
        )["bleu"]
    return out


def correctness(prediction: str, reference: str, kind: str | None) -> bool:
    """Whether one answer counts as right (closed: ``closed_correct``; open: exact match)."""
    if answer_type(kind, reference) == CLOSED:
        return closed_correct(prediction, reference)
    return normalize(prediction) == normalize(reference)


VQA_METRICS = ("closed_accuracy", "open_recall", "open_f1", "exact_match", "bleu")


class VQAAccumulator:
    """Keeps (answer, reference, type) per question; predictions: answers, references: ``{"answer": [...],
    "answer_type": [...]}``."""

    STATE = ("predictions", "references", "types")

    def __init__(self, names: Sequence[str] = VQA_METRICS, **_: Any) -> None:
        self.names = list(names)
        self.reset()

    def reset(self) -> None:
        self.predictions: list[str] = []
        self.references: list[str] = []
        self.types: list[str | None] = []

    def update(self, predictions: Sequence[str], references: dict[str, Sequence[Any]]) -> None:
        self.predictions.extend(str(p) for p in predictions)
        self.references.extend(str(r) for r in references["answer"])
        self.types.extend(references.get("answer_type") or [None] * len(predictions))

    def compute(self, keys: Sequence[str] | None = None) -> dict[str, float]:
        scores = score_answers(self.predictions, self.references, self.types)
        wanted = set(keys or self.names)
        return {k: v for k, v in scores.items() if k in wanted or k.endswith("_count")}

"""neurotrain/bleu (sacrebleu), clip_retrieval (hand-written reference), threshold (scikit-learn)."""

import numpy as np
import pytest
import sacrebleu
from sklearn import metrics as skm

from neurotrain_hf.metrics.retrieval import compute_clip_retrieval
from neurotrain_hf.metrics.text import compute_bleu
from neurotrain_hf.metrics.threshold import (
    ThresholdSweep,
    at_accuracy_threshold,
    at_recall_threshold,
    at_threshold,
)

PREDS = ["the cat sat on the mat", "a quick brown fox jumps", "hello world", "short"]
REFS = [
    ["the cat is on the mat", "there is a cat on the mat"],
    ["the quick brown fox jumped over"],
    ["hello there world", "hi world", "hello world !"],
    ["a much longer reference sentence here"],
]


@pytest.mark.parametrize("tokenize", ["13a", "none", "intl"])
@pytest.mark.parametrize("smooth", ["exp", "floor", "add-k"])
def test_bleu_equals_sacrebleu(tokenize, smooth):
    out = compute_bleu(PREDS, REFS, tokenize=tokenize, smooth_method=smooth)
    streams = [[r[j] if j < len(r) else None for r in REFS] for j in range(3)]
    for n in range(1, 5):
        ref = sacrebleu.metrics.BLEU(max_ngram_order=n, tokenize=tokenize, smooth_method=smooth)
        assert out[f"bleu_{n}"] == pytest.approx(ref.corpus_score(PREDS, streams).score / 100)
    full = sacrebleu.metrics.BLEU(tokenize=tokenize, smooth_method=smooth).corpus_score(PREDS, streams)
    assert out["bleu"] == out["bleu_4"]
    assert out["precisions"] == pytest.approx([p / 100 for p in full.precisions])
    assert (out["translation_length"], out["reference_length"]) == (full.sys_len, full.ref_len)
    assert out["brevity_penalty"] == pytest.approx(full.bp)


def test_sentence_level_and_lowercase():
    out = compute_bleu(PREDS, REFS, sentence_level=True, lowercase=True)
    bleu = sacrebleu.metrics.BLEU(lowercase=True, effective_order=True)
    ref = np.mean([bleu.sentence_score(p, r).score for p, r in zip(PREDS, REFS)]) / 100
    assert out["bleu"] == pytest.approx(ref)


def test_bleu_errors():
    with pytest.raises(ValueError, match="sample 1: references must be a non-empty list"):
        compute_bleu(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="empty"):
        compute_bleu([], [])


def hand_retrieval(sims, refs, k):
    t, n = sims.shape
    t2i = np.mean([refs[i] in sorted(range(n), key=lambda j: (-sims[i, j], j))[:k] for i in range(t)])
    hits = []
    for img in sorted(set(refs.tolist())):
        top = sorted(range(t), key=lambda i: (-sims[i, img], i))[:k]
        hits.append(any(refs[i] == img for i in top))
    return t2i, np.mean(hits)


@pytest.mark.parametrize("seed", range(4))
def test_clip_retrieval_matches_hand_reference(seed):
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, 12, 40)
    sims = np.round(rng.normal(size=(40, 12)), 1)  # ties
    out = compute_clip_retrieval(sims, refs, k_values=[1, 5, 10])
    for k in (1, 5, 10):
        t2i, i2t = hand_retrieval(sims, refs, k)
        assert out[f"text_to_image_recall@{k}"] == pytest.approx(t2i)
        assert out[f"image_to_text_recall@{k}"] == pytest.approx(i2t)
    assert out["clip_accuracy"] == pytest.approx(
        (out["text_to_image_recall@1"] + out["image_to_text_recall@1"]) / 2
    )
    assert out["mean_matched_similarity"] == pytest.approx(sims[np.arange(40), refs].mean())


def test_clip_retrieval_identity_and_errors():
    out = compute_clip_retrieval(np.eye(5), np.arange(5), k_values=[1])
    assert out["text_to_image_recall@1"] == out["image_to_text_recall@1"] == 1.0
    with pytest.raises(ValueError, match="sample 0: image index 7 outside"):
        compute_clip_retrieval(np.eye(3), [7, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        compute_clip_retrieval(np.full((2, 2), np.nan), [0, 1])


def test_threshold_sweep_matches_sklearn():
    rng = np.random.default_rng(0)
    probs = np.round(rng.random((4, 30, 30)), 2)
    refs = (rng.random((4, 30, 30)) < probs).astype(int)
    sweep = ThresholdSweep()
    for i in range(4):
        sweep.update(probs[i : i + 1], refs[i : i + 1])
    curves = sweep.curves()
    for i, t in enumerate(sweep.thresholds):
        pred = (probs >= t).ravel()
        assert curves["f1"][i] == pytest.approx(skm.f1_score(refs.ravel(), pred, zero_division=0))
        assert curves["accuracy"][i] == pytest.approx(skm.accuracy_score(refs.ravel(), pred))
        assert curves["recall"][i] == pytest.approx(skm.recall_score(refs.ravel(), pred, zero_division=0))
    best = sweep.best_threshold("f1")
    assert best["f1"] == pytest.approx(curves["f1"].max())
    assert at_threshold(probs, refs, 0.5)["precision"] == pytest.approx(
        skm.precision_score(refs.ravel(), (probs >= 0.5).ravel())
    )
    acc = at_accuracy_threshold(probs, refs)
    assert acc["accuracy"] == pytest.approx(curves["accuracy"].max())
    rec = at_recall_threshold(probs, refs, recall=0.9)
    assert rec["recall"] >= 0.9
    nxt = np.flatnonzero(np.isclose(sweep.thresholds, rec["threshold"]))[0] + 1
    assert curves["recall"][nxt] < 0.9  # the highest threshold still reaching the target


def test_threshold_family_in_classification_metrics():
    from neurotrain_hf.metrics import StreamingMetrics

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(100, 2))
    labels = (logits[:, 1] - logits[:, 0] + rng.normal(size=100) > 0).astype(int)
    sm = StreamingMetrics(
        ["accuracy", "best_f1", "best_f1_threshold"], ["classification", "threshold"], num_labels=2
    )
    sm.update(logits, labels)
    out = sm.compute()
    assert set(out) == {"accuracy", "best_f1", "best_f1_threshold"} and out["best_f1"] >= 0.5

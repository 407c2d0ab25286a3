import numpy as np
import pytest
from sklearn import metrics as skm

from neurotrain_hf.metrics import ClassificationAccumulator, StreamingMetrics, compute_classification
from neurotrain_hf.metrics.classification import softmax


def random_case(seed, n=300, c=6, ties=False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[labels] * rng.random((n, 1))
    if ties:
        logits = np.round(logits)  # many ties for top-k
    labels[:c] = np.arange(c)  # every class present
    return logits, labels


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_matches_sklearn(seed, average):
    logits, labels = random_case(seed, ties=seed % 2 == 1)
    c = logits.shape[1]
    acc = ClassificationAccumulator(c, top_k=(1, 3, 5), average=average)
    for start in range(0, len(labels), 37):  # streamed in uneven batches
        acc.update(logits[start : start + 37], labels[start : start + 37])
    out = acc.compute()
    probs, preds = softmax(logits), logits.argmax(1)
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds), abs=1e-12)
    p, r, f, _ = skm.precision_recall_fscore_support(labels, preds, average=average, zero_division=0)
    assert (out["precision"], out["recall"], out["f1"]) == pytest.approx((p, r, f), abs=1e-12)
    for k in (1, 3, 5):
        ref = skm.top_k_accuracy_score(labels, probs, k=k, labels=range(c))
        assert out[f"top{k}"] == pytest.approx(ref, abs=1e-12)
    if average == "micro":  # sklearn's multilabel micro AUC over the one-hot references
        ref_auc = skm.roc_auc_score(np.eye(c)[labels], probs, average="micro")
    else:
        ref_auc = skm.roc_auc_score(labels, probs, multi_class="ovr", average=average)
    assert out["auc"] == pytest.approx(ref_auc, abs=1e-9)


def test_classes_missing_from_predictions_follow_sklearn_zero_division():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 0, 0, 1, 1, 1])  # class 2 never predicted
    out = compute_classification(preds, labels, num_labels=4)  # class 3 absent everywhere
    p, r, f, _ = skm.precision_recall_fscore_support(labels, preds, average="macro", zero_division=0)
    assert (out["precision"], out["recall"], out["f1"]) == pytest.approx((p, r, f))
    assert "auc" not in out  # labels only: no scores to rank


def test_binary_auc():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    logits = rng.normal(size=(200, 2)) + np.eye(2)[labels]
    out = compute_classification(logits, labels, from_logits=True, top_k=(1,))
    assert out["auc"] == pytest.approx(skm.roc_auc_score(labels, softmax(logits)[:, 1]))


@pytest.mark.parametrize(
    ("preds", "refs", "match"),
    [
        (np.zeros((3, 4)), np.array([0, 1]), "3 predictions but 2 references"),
        (np.array([0, 5]), np.array([0, 1]), "sample 1: predictions label 5 outside"),
        (np.array([[0.1, np.nan, 0, 0]]), np.array([0]), "sample 0: predictions contain NaN"),
        (np.zeros((2, 3)), np.array([0, 1]), "3 scores per sample, expected 4"),
    ],
)
def test_bad_input_names_the_sample(preds, refs, match):
    with pytest.raises(ValueError, match=match):
        ClassificationAccumulator(4).update(preds, refs)


def test_empty_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        ClassificationAccumulator(3).compute()


def test_streaming_metrics_selects_names_and_memory_is_bounded():
    logits, labels = random_case(3)
    sm = StreamingMetrics(["accuracy", "f1"], ["classification"], num_labels=6)
    for start in range(0, 300, 50):
        sm.update(logits[start : start + 50], labels[start : start + 50])
    out = sm.compute()
    assert set(out) == {"accuracy", "f1"}
    acc = sm.family("classification")
    assert acc._scores == []  # nothing per-sample kept without AUC

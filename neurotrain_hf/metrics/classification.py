"""Classification metrics with streaming state, equal to scikit-learn.

State is a C x C confusion matrix and top-k hit counts (memory independent of the number of samples);
only AUC, which needs every score to rank, keeps the (N, C) probabilities, and only when asked for.
Precision/recall/F1 follow ``sklearn.metrics.precision_recall_fscore_support``: labels are those present
in references or predictions, zero division gives 0. Top-k follows ``top_k_accuracy_score`` (ties broken
as its stable argsort does). AUC is one-vs-rest over classes present in the references, as
``roc_auc_score(multi_class="ovr")``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

AVERAGES = ("macro", "micro", "weighted")


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class ClassificationAccumulator:
    """Streaming accuracy, precision, recall, F1, top-k accuracy and AUC over (scores or labels, labels)."""

    STATE = (
        "confusion",
        "topk_hits",
        "count",
        "_scores",
        "_labels",
        "_has_scores",
    )  # summed/extended across processes

    def __init__(
        self,
        num_labels: int,
        top_k: Iterable[int] = (1, 3, 5),
        average: str = "macro",
        keep_scores: bool = True,
        from_logits: bool = True,
    ) -> None:
        if average not in AVERAGES:
            raise ValueError(f"average={average!r}: expected one of {', '.join(AVERAGES)}")
        self.num_labels = int(num_labels)
        self.top_k = tuple(int(k) for k in top_k)
        self.average = average
        self.keep_scores = keep_scores
        self.from_logits = from_logits
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_labels, self.num_labels), dtype=np.int64)
        self.topk_hits = dict.fromkeys(self.top_k, 0)
        self.count = 0
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._has_scores = True

    def update(self, predictions, references) -> None:
        """Add a batch: predictions are labels (N,) or scores (N, C); references are labels (N,)."""
        preds, refs = _as_numpy(predictions), _as_numpy(references).astype(np.int64).reshape(-1)
        if preds.ndim == 2:
            if preds.shape[1] != self.num_labels:
                raise ValueError(
                    f"predictions have {preds.shape[1]} scores per sample, expected {self.num_labels}"
                )
            if not np.isfinite(preds).all():
                bad = int(np.argwhere(~np.isfinite(preds))[0][0])
                raise ValueError(f"sample {self.count + bad}: predictions contain NaN or inf scores")
            scores = softmax(preds) if self.from_logits else preds.astype(np.float64)
            labels_pred = scores.argmax(axis=1)
        elif preds.ndim == 1:
            scores, labels_pred = None, preds.astype(np.int64)
            self._has_scores = False
        else:
            raise ValueError(f"predictions must be (N,) labels or (N, C) scores, got shape {preds.shape}")
        if len(labels_pred) != len(refs):
            raise ValueError(f"{len(labels_pred)} predictions but {len(refs)} references in this batch")
        for name, arr in (("references", refs), ("predictions", labels_pred)):
            bad = np.flatnonzero((arr < 0) | (arr >= self.num_labels))
            if bad.size:
                raise ValueError(
                    f"sample {self.count + int(bad[0])}: {name} label {int(arr[bad[0]])} outside [0, {self.num_labels})"
                )
        np.add.at(self.confusion, (refs, labels_pred), 1)
        if scores is not None:
            order = np.argsort(scores, axis=1, kind="mergesort")[:, ::-1]  # as sklearn's top_k_accuracy_score
            for k in self.top_k:
                self.topk_hits[k] += int((order[:, :k] == refs[:, None]).any(axis=1).sum())
            if self.keep_scores:
                self._scores.append(scores)
                self._labels.append(refs)
        self.count += len(refs)

    def precision_recall_f1(self, average: str | None = None) -> tuple[float, float, float]:
        average = average or self.average
        cm = self.confusion
        tp = np.diag(cm).astype(np.float64)
        pred_n, true_n = cm.sum(axis=0).astype(np.float64), cm.sum(axis=1).astype(np.float64)
        present = (pred_n > 0) | (true_n > 0)
        tp, pred_n, true_n = tp[present], pred_n[present], true_n[present]
        if average == "micro":
            tp, pred_n, true_n = tp.sum(keepdims=True), pred_n.sum(keepdims=True), true_n.sum(keepdims=True)
        precision = np.divide(tp, pred_n, out=np.zeros_like(tp), where=pred_n > 0)
        recall = np.divide(tp, true_n, out=np.zeros_like(tp), where=true_n > 0)
        denom = pred_n + true_n  # 2tp + fp + fn
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        weights = true_n if average == "weighted" else None
        if weights is not None and weights.sum() == 0:
            return 0.0, 0.0, 0.0
        return tuple(float(np.average(v, weights=weights)) for v in (precision, recall, f1))

    def auc(self) -> float:
        """One-vs-rest ROC AUC; NaN when no scores were kept or fewer than two classes are present."""
        from sklearn.metrics import roc_auc_score

        if not self._scores or not self._has_scores:
            return float("nan")
        scores, labels = np.concatenate(self._scores), np.concatenate(self._labels)
        present = np.unique(labels)
        if len(present) < 2:
            return float("nan")
        if self.num_labels == 2:
            return float(roc_auc_score(labels, scores[:, 1]))
        per_class = np.array([roc_auc_score(labels == c, scores[:, c]) for c in present])
        if self.average == "weighted":
            return float(np.average(per_class, weights=[(labels == c).sum() for c in present]))
        if self.average == "micro":
            onehot = labels[:, None] == np.arange(self.num_labels)[None, :]
            return float(roc_auc_score(onehot.ravel(), scores.ravel()))
        return float(per_class.mean())

    def compute(self, names: Sequence[str] | None = None) -> dict[str, float]:
        """All metrics (or ``names`` of them): accuracy, precision, recall, f1, auc, top<k>."""
        if self.count == 0:
            raise ValueError("no samples were added: the evaluation set is empty")
        out: dict[str, float] = {"accuracy": float(np.trace(self.confusion) / self.count)}
        out["precision"], out["recall"], out["f1"] = self.precision_recall_f1()
        if self._has_scores:
            for k in self.top_k:
                out[f"top{k}"] = 1.0 if k >= self.num_labels else self.topk_hits[k] / self.count
            if self.keep_scores:
                out["auc"] = self.auc()
        if names is not None:
            out = {n: out[n] for n in names if n in out}
        return out


def compute_classification(
    predictions,
    references,
    num_labels: int | None = None,
    average: str = "macro",
    top_k: Iterable[int] = (1, 3, 5),
    from_logits: bool = False,
) -> dict[str, float]:
    """One-shot version of the accumulator for in-memory arrays."""
    preds = _as_numpy(predictions)
    refs = _as_numpy(references)
    if num_labels is None:
        num_labels = preds.shape[1] if preds.ndim == 2 else int(max(preds.max(), refs.max())) + 1
    acc = ClassificationAccumulator(num_labels, top_k=top_k, average=average, from_logits=from_logits)
    acc.update(preds, refs)
    return acc.compute()

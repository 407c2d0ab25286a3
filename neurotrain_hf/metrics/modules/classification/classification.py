"""neurotrain/classification: Accuracy, precision, recall, F1, one-vs-rest AUC and top-k accuracy, equal to scikit-learn.

The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""

from neurotrain_hf.metrics.evaluate_modules import Classification  # noqa: F401

"""neurotrain/threshold: Metrics of binary probability maps over thresholds: best-F1, best-accuracy, target-recall.

The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""

from neurotrain_hf.metrics.evaluate_modules import Threshold  # noqa: F401

"""neurotrain/fid: Frechet distance between generated and real feature vectors, equal to torchmetrics FID.

The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""

from neurotrain_hf.metrics.evaluate_modules import FID  # noqa: F401

"""neurotrain/kid: Kernel inception distance (unbiased cubic-kernel MMD^2 over subsets), as clean-fid and torchmetrics.

The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""

from neurotrain_hf.metrics.evaluate_modules import KID  # noqa: F401

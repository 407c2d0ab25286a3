"""neurotrain/nsd: Normalized surface Dice at a tolerance, equal to MONAI compute_surface_dice, faster on CPU.

The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""

from neurotrain_hf.metrics.evaluate_modules import NSD  # noqa: F401

"""neurotrain/dice: Dice coefficient per class for 2D/3D integer label maps, equal to MONAI compute_dice.

The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""

from neurotrain_hf.metrics.evaluate_modules import Dice  # noqa: F401

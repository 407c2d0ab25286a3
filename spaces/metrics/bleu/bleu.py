"""neurotrain/bleu: BLEU computed by sacrebleu, with cumulative BLEU-1..4 and variable references per prediction.

The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""

from neurotrain_hf.metrics.evaluate_modules import Bleu  # noqa: F401

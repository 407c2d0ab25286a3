"""neurotrain/clip_retrieval: Text-to-image and image-to-text recall@k with the CLIP-paper protocol.

The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""

from neurotrain_hf.metrics.evaluate_modules import ClipRetrieval  # noqa: F401

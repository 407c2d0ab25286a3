"""Gradio demos, one per task: ``build_demo(model)`` returns a ``gr.Blocks`` serving ``/predict``.

``model`` is a Hub repo id or a local run/model folder (default: the ``NEUROTRAIN_MODEL`` environment
variable). Gradio is imported only when a demo is built (``pip install neurotrain-hf[demo]``).
"""

from .common import MAX_BYTES, MAX_SIDE, MODEL_ENV, resolve_model

__all__ = ["MAX_BYTES", "MAX_SIDE", "MODEL_ENV", "resolve_model"]

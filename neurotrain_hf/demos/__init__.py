"""Gradio demos: ``build_demo(model)`` returns the ``gr.Blocks`` of the model's task, serving ``/predict``.

``model`` is a Hub repo id or a local run/model folder (default: the ``NEUROTRAIN_MODEL`` environment
variable); the folder's task builds the demo (``Task.build_demo``; each task's demo lives in its folder).
Gradio is imported only when a demo is built (``pip install neurotrain-hf[demo]``).
"""

from __future__ import annotations

from typing import Any

from .common import MAX_BYTES, MAX_SIDE, MODEL_ENV, resolve_model, serve_limits


def build_demo(model: str | None = None, examples: Any = None, **options: Any) -> Any:
    """The demo of ``model``'s task (options such as ``top_k`` go to the task's demo), its queue and
    uploads bounded (``serve_limits``: the task's own limits, else the defaults)."""
    import os

    from ..predictor import task_of
    from ..tasks import get_task

    folder = resolve_model(model)
    task = get_task(task_of(folder)).load()
    demo = task.build_demo(folder, str(model or os.environ.get(MODEL_ENV) or folder), examples, **options)
    return demo if hasattr(demo, "neurotrain_limits") else serve_limits(demo)


__all__ = ["MAX_BYTES", "MAX_SIDE", "MODEL_ENV", "build_demo", "resolve_model", "serve_limits"]

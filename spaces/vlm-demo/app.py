"""Hugging Face Space: the neurotrain VLM demo; the model is $NEUROTRAIN_MODEL (a Hub id or a folder)."""

import os
from pathlib import Path

from neurotrain_hf.demos import build_demo  # the model folder's task builds the demo

demo = build_demo(
    os.environ.get("NEUROTRAIN_MODEL", "neurotrain/synthetic-vqa-llava"),
    examples=Path(__file__).parent / "examples",
)

if __name__ == "__main__":
    demo.launch()

"""Hugging Face Space: the neurotrain diffusion demo; the model is $NEUROTRAIN_MODEL (a Hub id or a folder)."""

import os

from neurotrain_hf.demos import build_demo  # the model folder's task builds the demo

demo = build_demo(os.environ.get("NEUROTRAIN_MODEL", "neurotrain/color-shapes-ddpm"))

if __name__ == "__main__":
    demo.launch()

"""Classification demo: an image in, the top-k labels with their softmax scores out (``gr.Label``).

Scores and labels are the ``Predictor``'s (the model's ``id2label`` names). API: ``/predict(image)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...demos.common import examples_of, gradio, guarded, image_input, open_checked, serve_limits

TOP_K = 5


def build_demo(folder: Path, model: str, examples: Any = None, top_k: int = TOP_K) -> Any:
    """A ``gr.Blocks`` classifying one uploaded image with the model folder (``model``: its name)."""
    from ...predictor import Predictor

    gr = gradio()
    predictor = Predictor.from_pretrained(folder)
    config = predictor.model.config
    names = [str(config.id2label.get(i, i)) for i in range(config.num_labels)]
    k = min(top_k, len(names))

    @guarded
    def predict(path: str | None) -> dict[str, float]:
        image = open_checked(path)
        record = predictor(image)
        order = sorted(range(len(names)), key=lambda i: -record["scores"][i])[:k]
        return {names[i]: float(record["scores"][i]) for i in order}

    with gr.Blocks(title="neurotrain classification") as demo:
        gr.Markdown(
            f"## Image classification\nModel: `{model}`. Upload an image; the {k} most likely "
            "classes with their probabilities. Grey, 16-bit and RGBA images are converted; at most "
            "4096 px per side and 20 MB."
        )
        with gr.Row():
            with gr.Column():
                image = image_input()
                button = gr.Button("Classify", variant="primary")
            labels = gr.Label(num_top_classes=k, label="Top classes")
        button.click(predict, inputs=image, outputs=labels, api_name="predict")
        if files := examples_of(examples):
            gr.Examples(files, inputs=image, cache_examples=False)
    return serve_limits(demo)

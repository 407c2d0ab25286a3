"""Detection demo: an image in, the image with its detections drawn and a table of them out.

Detections are the ``Predictor``'s (the model's saved score threshold, class-wise NMS and maximum count),
in the image's own pixels; the slider hides detections below a display threshold. Uploads are checked as
in every demo. API: ``/predict(image, min_score)`` -> ``(drawing, detections)`` where ``detections`` has
the rows ``label, score, x0, y0, x1, y1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...demos.common import (
    ResultFiles,
    examples_of,
    gradio,
    guarded,
    image_input,
    open_checked,
    rgb_array,
    serve_limits,
)
from ...drawing import render_detections


def build_demo(folder: Path, model: str, examples: Any = None) -> Any:
    """A ``gr.Blocks`` detecting objects in one uploaded image with the model folder (``model``: its name)."""
    from ...predictor import Predictor

    gr = gradio()
    predictor = Predictor.from_pretrained(folder)
    config = predictor.model.config
    names = [str(config.id2label.get(i, i)) for i in range(config.num_labels)]
    results = ResultFiles()

    @guarded
    def predict(path: str | None, min_score: float = 0.5) -> tuple[str, list[list[Any]]]:
        image = open_checked(path)
        record = predictor(image)
        threshold = float(0.5 if min_score is None else min_score)
        drawing = render_detections(rgb_array(image), record, None, names, threshold)
        picture = results.png(results.folder(), "detections", drawing)
        rows = [
            [name, round(float(score), 4), *(round(float(v), 1) for v in box)]
            for name, score, box in zip(record["label_names"], record["scores"], record["boxes"])
            if float(score) >= threshold
        ]
        return picture, rows

    with gr.Blocks(title="neurotrain detection") as demo:
        gr.Markdown(
            f"## Object detection\nModel: `{model}` ({', '.join(names)}). Upload an image: boxes, labels "
            "and scores drawn on it, and the table of detections (image pixels). Grey, 16-bit and RGBA images are "
            "converted; at most 4096 px per side and 20 MB."
        )
        with gr.Row():
            with gr.Column():
                image = image_input()
                min_score = gr.Slider(
                    0.0, 1.0, value=0.5, step=0.01, label="Show detections scoring at least"
                )
                button = gr.Button("Detect", variant="primary")
            with gr.Column():
                drawing = gr.Image(label="Detections", format="png", type="numpy")
                table = gr.Dataframe(headers=["label", "score", "x0", "y0", "x1", "y1"], label="Detections")
        button.click(predict, inputs=[image, min_score], outputs=[drawing, table], api_name="predict")
        if files := examples_of(examples):
            gr.Examples(files, inputs=image, cache_examples=False)
    return serve_limits(demo)

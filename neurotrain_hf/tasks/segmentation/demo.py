"""Segmentation demo: an image in, the label mask (lossless PNG) and an overlay out.

The mask is the ``Predictor``'s with the model's ``SegmentationSettings`` (saved in ``config.json``):
for a one-channel (binary) model, foreground where the sigmoid is >= the threshold, stored 0/255; for a
multi-class model, the argmax label per pixel, stored as the label values (0, 1, 2, ...); then the
post-processing (opening, closing, hole filling, small-component removal, largest component). The
controls start at the saved values and replace them for one request, so a request with the defaults
returns exactly ``Predictor.from_pretrained(model)(image)["mask"]``. The overlay tints each foreground
class with its PASCAL VOC palette colour over the image.

API: ``/predict(image, threshold, opening, closing, fill_holes, min_size, keep_largest)`` ->
``(mask, overlay)``, both PNG.
"""

from __future__ import annotations

from dataclasses import replace
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
from ...drawing import mask_to_png_array, overlay_prediction
from .postprocess import PostProcessConfig
from .settings import SegmentationSettings
from .unet import head_channels


def build_demo(folder: Path, model: str, examples: Any = None, open_with_example: bool = True) -> Any:
    """A ``gr.Blocks`` segmenting one uploaded 2D image with the model folder (``model``: its name).

    ``examples``: image files or a folder of them, offered below the input; with ``open_with_example``
    the page opens with the first one segmented."""
    from ...predictor import Predictor

    gr = gradio()
    predictor = Predictor.from_pretrained(folder)
    saved_settings = SegmentationSettings.of(predictor.model.config)
    saved, start = saved_settings.postprocess, saved_settings.threshold_value
    binary = head_channels(predictor.model.config) == 1
    results = ResultFiles()

    @guarded
    def predict(
        path: str | None,
        threshold: float = start,
        opening: float = saved.opening,
        closing: float = saved.closing,
        fill_holes: bool = saved.fill_holes,
        min_size: float = saved.min_size,
        keep_largest: bool = saved.keep_largest,
    ) -> tuple[str, str]:
        image = open_checked(path)
        value = float(start if threshold is None else threshold)
        if not 0.0 <= value <= 1.0:
            raise gr.Error(f"threshold {value}: expected a value in [0, 1]")
        settings = replace(
            saved_settings,
            threshold=value,
            postprocess=PostProcessConfig(
                opening=max(int(opening or 0), 0),
                closing=max(int(closing or 0), 0),
                fill_holes=bool(fill_holes),
                min_size=max(int(min_size or 0), 0),
                keep_largest=bool(keep_largest),
                connectivity=saved.connectivity,
            ),
        )
        labels = predictor.predict([image], settings=settings)[0]["mask"]
        mask = mask_to_png_array(labels, 2) if binary else labels
        folder = results.folder()
        overlay = overlay_prediction(rgb_array(image), labels)
        return results.png(folder, "mask", mask), results.png(folder, "overlay", overlay)

    files = examples_of(examples)
    with gr.Blocks(title="neurotrain segmentation") as demo:
        kind = "foreground 255, background 0" if binary else "pixel values are the class labels"
        gr.Markdown(
            f"## Image segmentation\nModel: `{model}`. Upload an image: the mask (lossless PNG, "
            f"{kind}) and an overlay. Grey, 16-bit and RGBA images are converted; at most 4096 px per side "
            "and 20 MB."
        )
        with gr.Row():
            with gr.Column():
                image = image_input(value=files[0] if files and open_with_example else None)
                threshold = gr.Slider(0.0, 1.0, value=start, step=0.01, label="Threshold", visible=binary)
                with gr.Accordion("Post-processing", open=False):
                    opening = gr.Slider(0, 10, value=saved.opening, step=1, label="Opening radius (px)")
                    closing = gr.Slider(0, 10, value=saved.closing, step=1, label="Closing radius (px)")
                    fill_holes = gr.Checkbox(value=saved.fill_holes, label="Fill holes")
                    min_size = gr.Number(
                        value=saved.min_size,
                        minimum=0,
                        precision=0,
                        label="Remove components smaller than (px)",
                    )
                    keep_largest = gr.Checkbox(value=saved.keep_largest, label="Keep the largest component")
                button = gr.Button("Segment", variant="primary")
            with gr.Column():
                mask = gr.Image(label="Mask", format="png", type="numpy", image_mode=None, elem_id="mask")
                overlay = gr.Image(label="Overlay", format="png", type="numpy", elem_id="overlay")
        inputs = [image, threshold, opening, closing, fill_holes, min_size, keep_largest]
        button.click(
            predict, inputs=inputs, outputs=[mask, overlay], api_name="predict", concurrency_id="predict"
        )
        if files:
            gr.Examples(files, inputs=image, cache_examples=False)
            if open_with_example:  # the page opens with the first example segmented
                demo.load(  # in the same queue slot as the button: one prediction at a time
                    predict, inputs=inputs, outputs=[mask, overlay], api_name=False, concurrency_id="predict"
                )
    return serve_limits(demo)

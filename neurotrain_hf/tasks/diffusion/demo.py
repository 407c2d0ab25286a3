"""Diffusion demo: images generated from noise, for a class (class-conditioned models), a mask
(mask-conditioned models) or nothing (unconditional models).

Image ``i`` of a request starts from the noise of seed ``seed + i`` and is sampled with the model's saved
sampler, as ``neurotrain predict RUN --seed S --num N`` and the ``Predictor`` do: the same seed, class or
mask, steps and guidance give the same images. The steps and the guidance scale start at the values
saved with the model (the steps at most ``MAX_STEPS``) and replace them for one request. A mask is any
image of exactly the model's image size (the task's ``read_mask``; foreground: any non-zero pixel);
without one, a mask-conditioned model samples from the null mask (as the CLI does). Requests beyond the
limits are refused with one line, never clamped: at most ``MAX_IMAGES`` images and ``MAX_STEPS``
sampling steps, guidance in [0, ``MAX_GUIDANCE``], seed in [0, ``MAX_SEED``]; a class that is not the
model's, or a class / mask for a model not conditioned on it, is refused by name.

API: ``/predict(class_name, mask, num_images, seed, steps, guidance_scale)`` -> a gallery (PNG files,
captioned ``seed S`` and the class); every argument is optional (keywords with ``gradio_client``).
``class_name``: a class name or its index.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from ...demos.common import (
    InputError,
    ResultFiles,
    examples_of,
    gradio,
    guarded,
    image_input,
    open_checked,
    serve_limits,
)
from ...errors import NeuroTrainError

MAX_IMAGES = 16
MAX_STEPS = 100
MAX_GUIDANCE = 20.0
MAX_SEED = 2**32 - 1


def whole_number(value: Any, name: str, low: int, high: int, default: int) -> int:
    """``value`` (from the page or an API call) as an int in [low, high], or ``InputError`` naming it."""
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} {value!r}: expected a whole number from {low} to {high}") from None
    if not (number.is_integer() and low <= number <= high):
        raise InputError(f"{name} {value}: expected a whole number from {low} to {high}")
    return int(number)


def guidance_value(value: Any, default: float) -> float:
    """The guidance scale, a finite number in [0, ``MAX_GUIDANCE``]."""
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and 0.0 <= number <= MAX_GUIDANCE):
        raise InputError(f"guidance scale {value}: expected a number from 0 to {MAX_GUIDANCE:g}")
    return number


def class_index(names: list[str], value: Any) -> int:
    """A class name, or its index, -> the index; anything else is one line listing the classes."""
    if str(value) in names:
        return names.index(str(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number.is_integer() and 0 <= number < len(names):
        return int(number)
    raise InputError(f"class {value!r}: not one of the model's classes ({', '.join(names)})")


def read_mask_upload(path: str | None, size: int) -> Any:
    """An uploaded mask -> (1, size, size) in {-1, 1}: the upload checks, then the task's ``read_mask``
    (its one-line message, with the upload's name in place of the server's path)."""
    from .task import DiffusionTask

    open_checked(path, "mask").close()  # size, format and decoding limits, as for every upload
    name = Path(str(path)).name
    try:
        return DiffusionTask.read_mask(str(path), size)
    except NeuroTrainError as exc:
        raise InputError(str(exc).splitlines()[0].replace(str(path), name)) from None


def passthrough(component: Any) -> Any:
    """``component`` handing its raw value to the function: the demo's checks give the message (gradio's
    own range / choice checks answer without naming the field and log a traceback)."""
    component.preprocess = lambda payload: payload
    return component


def build_demo(folder: Path, model: str, examples: Any = None, **options: Any) -> Any:
    """A ``gr.Blocks`` generating a gallery of images with the model folder (``model``: its name).

    ``examples``: mask files or a folder of them (mask-conditioned models); class-conditioned models
    offer their first classes as examples. It takes no ``options`` (one line naming any given)."""
    from ...predictor import Predictor
    from .task import to_uint8

    if options:
        raise NeuroTrainError(f"the diffusion demo takes no options, got {', '.join(sorted(options))}")
    gr = gradio()
    predictor = Predictor.from_pretrained(folder)
    config, saved = predictor.model.config, dict(predictor.inference.settings)
    conditioning, names, size = config.conditioning, list(config.class_names), config.image_size
    steps_default, guidance_default = int(saved["sampling_steps"]), float(saved["guidance_scale"])
    results, lock = ResultFiles(), threading.Lock()

    @guarded
    def predict(
        class_name: Any = None,
        mask: str | None = None,
        num_images: Any = 4,
        seed: Any = 0,
        steps: Any = min(steps_default, MAX_STEPS),
        guidance_scale: Any = guidance_default,
    ) -> list[tuple[str, str]]:
        num = whole_number(num_images, "number of images", 1, MAX_IMAGES, 4)
        first = whole_number(seed, "seed", 0, MAX_SEED, 0)
        count = whole_number(steps, "sampling steps", 1, MAX_STEPS, min(steps_default, MAX_STEPS))
        guidance = guidance_value(guidance_scale, guidance_default)
        item: dict[str, Any] = {}
        if class_name not in (None, ""):
            if conditioning != "class":
                raise InputError(f"class {class_name!r}: this model is not class-conditioned")
            item["class"] = class_index(names, class_name)
        elif conditioning == "class":
            raise InputError(f"no class: choose one of {', '.join(names)}")
        if mask:
            if conditioning != "mask":
                raise InputError(f"mask: this model is conditioned on {conditioning!r}, not on masks")
            item["mask"] = read_mask_upload(mask, size)
        if first + num - 1 > MAX_SEED:
            raise InputError(
                f"seed {first}: {num} images need the seeds up to {first + num - 1}, over {MAX_SEED}"
            )
        seeds = [first + i for i in range(num)]
        with lock:  # the settings of this request only, one request at a time
            predictor.inference.settings.update(sampling_steps=count, guidance_scale=guidance)
            try:
                records = predictor.predict([{**item, "noise_seed": s} for s in seeds])
            finally:
                predictor.inference.settings.update(saved)
        request = results.folder()
        label = f", {names[item['class']]}" if "class" in item else ""
        return [
            (results.png(request, f"seed_{s}", to_uint8(r["image"])), f"seed {s}{label}")
            for s, r in zip(seeds, records)
        ]

    with gr.Blocks(title="neurotrain diffusion") as demo:
        condition = {
            "class": "Choose a class: images of it.",
            "mask": f"Upload a mask ({size} x {size} px, foreground: any non-zero pixel): images for it; "
            "without one, unconditioned images.",
            "none": "Unconditional: images like the training data.",
        }[conditioning]
        gr.Markdown(
            f"## Image generation (denoising diffusion)\nModel: `{model}` ({size} x {size} px, "
            f"{saved['sampler']} sampler). {condition} Image i starts from the noise of seed + i: the same "
            f"inputs give the same images. At most {MAX_IMAGES} images and {MAX_STEPS} steps per request."
        )
        with gr.Row():
            with gr.Column():
                choice = passthrough(
                    gr.Dropdown(
                        choices=names,
                        value=names[0] if names else None,
                        label="Class",
                        visible=conditioning == "class",
                    )
                )
                mask_image = image_input("Mask", visible=conditioning == "mask")
                num = passthrough(gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Number of images"))
                seed = passthrough(gr.Number(value=0, minimum=0, maximum=MAX_SEED, precision=0, label="Seed"))
                steps = passthrough(
                    gr.Slider(
                        1, MAX_STEPS, value=min(steps_default, MAX_STEPS), step=1, label="Sampling steps"
                    )
                )
                guidance = passthrough(
                    gr.Slider(
                        0.0,
                        MAX_GUIDANCE,
                        value=guidance_default,
                        step=0.1,
                        label="Guidance scale (classifier-free; 1: none)",
                        visible=conditioning != "none",
                    )
                )
                button = gr.Button("Generate", variant="primary")
            with gr.Column():
                gallery = gr.Gallery(label="Generated images", format="png", columns=4)
        inputs = [choice, mask_image, num, seed, steps, guidance]
        button.click(predict, inputs=inputs, outputs=gallery, api_name="predict")
        if conditioning == "class":
            gr.Examples(
                [[name, 4, 0] for name in names[:4]], inputs=[choice, num, seed], cache_examples=False
            )
        elif conditioning == "mask" and (files := examples_of(examples)):
            gr.Examples(files, inputs=mask_image, cache_examples=False)
    return serve_limits(demo)

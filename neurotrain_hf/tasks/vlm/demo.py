"""VLM demo: an image and a question in, the model's answer out (visual question answering).

The answer is the ``Predictor``'s: the question and the image as a one-turn chat (the model's chat
template), answered with the generation settings saved with the model (no sampling: ``num_beams``, at
most ``max_new_tokens``), so ``/predict`` answers as ``Predictor.from_pretrained(model)({"image": image,
"question": question})`` and ``neurotrain predict RUN image.png --question "..."`` do for an 8-bit image.
Uploads are checked as in every demo (at most 4096 px per side and 20 MB) and reach the model as RGB
uint8 (``rgb_array``: 16-bit scaled, grey repeated, alpha dropped); an empty question, or one over
``MAX_QUESTION`` characters, is refused with one line. API: ``/predict(image, question)`` -> ``answer``
(a string).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...demos.common import (
    InputError,
    examples_of,
    gradio,
    guarded,
    image_input,
    open_checked,
    rgb_array,
    serve_limits,
)
from ...errors import NeuroTrainError

MAX_QUESTION = 1000  # characters, after stripping surrounding whitespace
EXAMPLE_QUESTIONS = ("how many shapes are there?", "what colour are the shapes?", "is there a circle?")


def checked_question(text: Any) -> str:
    """The question stripped of surrounding whitespace, or ``InputError`` when it is empty or too long."""
    question = "" if text is None else str(text).strip()
    if not question:
        raise InputError("no question: type a question about the image")
    if len(question) > MAX_QUESTION:
        raise InputError(f"question: {len(question):,} characters, over the {MAX_QUESTION:,}-character limit")
    return question


def build_demo(folder: Path, model: str, examples: Any = None, **options: Any) -> Any:
    """A ``gr.Blocks`` answering a question about one uploaded image with the model folder (``model``: its
    name). ``examples``: image files or a folder of them, each offered with a question; it takes no
    ``options`` (one line naming any given)."""
    from ...predictor import Predictor

    if options:
        raise NeuroTrainError(f"the VLM demo takes no options, got {', '.join(sorted(options))}")
    gr = gradio()
    predictor = Predictor.from_pretrained(folder)
    tokens, beams = int(predictor.settings["max_new_tokens"]), int(predictor.settings["num_beams"])
    decoding = "greedy" if beams == 1 else f"beam search, {beams} beams"

    @guarded
    def predict(path: str | None, question: str | None) -> str:
        pixels = rgb_array(open_checked(path))  # (H, W, 3) uint8: 16-bit scaled, grey repeated, alpha dropped
        return str(predictor({"image": pixels, "question": checked_question(question)})["answer"])

    with gr.Blocks(title="neurotrain VLM") as demo:
        gr.Markdown(
            f"## Visual question answering\nModel: `{model}`. Upload an image and ask a question about it: "
            f"the model's answer ({decoding}, at most {tokens} new tokens). Grey, 16-bit and RGBA images are "
            f"converted; at most 4096 px per side and 20 MB, questions of at most {MAX_QUESTION} characters."
        )
        with gr.Row():
            with gr.Column():
                image = image_input()
                question = gr.Textbox(label="Question", placeholder=EXAMPLE_QUESTIONS[0], max_lines=4)
                button = gr.Button("Answer", variant="primary")
            answer = gr.Textbox(label="Answer", interactive=False)
        button.click(predict, inputs=[image, question], outputs=answer, api_name="predict")
        if files := examples_of(examples):
            pairs = [[f, EXAMPLE_QUESTIONS[i % len(EXAMPLE_QUESTIONS)]] for i, f in enumerate(files)]
            gr.Examples(pairs, inputs=[image, question], cache_examples=False)
    return serve_limits(demo)

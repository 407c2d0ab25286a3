"""CLIP demo: a gallery of images and a text -> the images ranked for the text; labels -> zero-shot.

- Retrieval (text -> images): every uploaded image is ranked by the cosine similarity of its unit
  image embedding with the text's unit embedding, highest first (ties keep upload order).
- Zero-shot (image -> labels): the comma-separated labels become prompts with the model's templates
  (``neurotrain_zero_shot`` in config.json, else ``"a photo of a {}."``); a label's embedding is the
  unit mean of its prompts' unit embeddings (as in the training's evaluation), and each image's labels
  are ranked by probability, the softmax of ``logit_scale * cosine`` over the labels (SigLIP models:
  the sigmoid of ``logit_scale * cosine + logit_bias``).

The model loads with ``AutoModel``/``AutoProcessor`` (``CLIPModel``/``CLIPProcessor`` for neurotrain
CLIP folders). API: ``/predict(images, text, labels)`` -> ``(ranking, zero_shot, gallery)``; ``ranking``
rows are ``[rank, image file name, cosine similarity]``, ``zero_shot`` rows ``[image, rank, label,
probability]``. At most ``MAX_IMAGES`` images and ``MAX_PIXELS`` decoded pixels per request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...demos.common import (
    InputError,
    ResultFiles,
    examples_of,
    file_input,
    gradio,
    guarded,
    open_checked,
    rgb_array,
    serve_limits,
)

MAX_IMAGES = 64
MAX_PIXELS = 2**26  # 67 M pixels decoded per request (about 200 MB as RGB), whatever the image count
RANKING_HEADERS = ["rank", "image", "cosine similarity"]
ZERO_SHOT_HEADERS = ["image", "rank", "label", "probability"]


def parse_labels(text: str | None) -> list[str]:
    """Comma-separated labels, stripped, empty ones and repeats dropped (first kept)."""
    seen: dict[str, None] = {}
    for label in (text or "").split(","):
        if label.strip():
            seen.setdefault(label.strip(), None)
    return list(seen)


class ClipScorer:
    """Unit embeddings of images and texts with a CLIP-style model folder, and the scores above."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoModel, AutoProcessor

        from .inference import text_length
        from .task import ClipTask

        self.model = AutoModel.from_pretrained(str(folder)).eval()
        self.processor = AutoProcessor.from_pretrained(str(folder))
        settings = ClipTask().settings(self.model.config)  # the zero-shot labels and templates saved with it
        self.labels, self.templates = settings["labels"], settings["templates"]
        self.max_length = text_length(self.processor.tokenizer, settings["positions"])

    def image_embeddings(self, images: list[np.ndarray]) -> Any:
        import torch

        from .inference import image_embeddings

        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            return image_embeddings(self.model, pixels)

    def text_embeddings(self, texts: list[str]) -> Any:
        import torch

        from .inference import text_embeddings

        tokens = self.processor.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.no_grad():
            return text_embeddings(self.model, tokens["input_ids"], tokens.get("attention_mask"))

    def zero_shot(self, image_embeds: Any, labels: list[str]) -> np.ndarray:
        """(images, labels) probabilities (``inference.zero_shot_probabilities``)."""
        import torch

        from .inference import class_embeddings, prompt_tokens, zero_shot_probabilities

        tokens = prompt_tokens(self.processor.tokenizer, labels, self.templates, self.max_length)
        with torch.no_grad():
            classes = class_embeddings(
                self.model, tokens["input_ids"], tokens.get("attention_mask"), len(labels)
            )
            return zero_shot_probabilities(self.model, image_embeds, classes).numpy()


def build_demo(folder: Path, model: str, examples: Any = None) -> Any:
    """A ``gr.Blocks`` ranking uploaded images for a text, and labels for each image (zero-shot)."""
    gr = gradio()
    scorer = ClipScorer(folder)
    results = ResultFiles()

    @guarded
    def predict(files: list[Any] | None, text: str | None, labels_text: str | None) -> tuple:
        paths = [str(getattr(f, "name", f)) for f in (files or [])]
        if not paths:
            raise InputError("no images: upload one or more image files")
        if len(paths) > MAX_IMAGES:
            raise InputError(f"{len(paths)} images: at most {MAX_IMAGES} at a time")
        query, labels = (text or "").strip(), parse_labels(labels_text)
        if not query and not labels:
            raise InputError("enter a text to rank the images, or labels to classify them")
        names = [Path(p).name for p in paths]
        images, pixels = [], 0
        for p in paths:  # decoded one by one: the total stays bounded however many large files come
            images.append(rgb_array(open_checked(p)))
            pixels += images[-1].shape[0] * images[-1].shape[1]
            if pixels > MAX_PIXELS:
                raise InputError(
                    f"{Path(p).name}: the images reach {pixels:,} pixels, over {MAX_PIXELS:,} per request"
                )
        embeds = scorer.image_embeddings(images)
        ranking: list[list[Any]] = []
        gallery: list[tuple[str, str]] = []
        request = results.folder()
        shown = [results.png(request, f"{i}", image) for i, image in enumerate(images)]
        if query:
            similarity = (embeds @ scorer.text_embeddings([query])[0]).tolist()
            order = sorted(range(len(paths)), key=lambda i: -similarity[i])
            for rank, i in enumerate(order, 1):
                ranking.append([rank, names[i], round(float(similarity[i]), 6)])
                gallery.append((shown[i], f"{rank}. {names[i]} ({similarity[i]:.3f})"))
        else:
            gallery = list(zip(shown, names))
        zero_shot: list[list[Any]] = []
        if labels:
            probabilities = scorer.zero_shot(embeds, labels)
            for i, name in enumerate(names):
                order = sorted(range(len(labels)), key=lambda j: -probabilities[i, j])
                for rank, j in enumerate(order, 1):
                    zero_shot.append([name, rank, labels[j], round(float(probabilities[i, j]), 6)])
        return (
            {"headers": RANKING_HEADERS, "data": ranking},
            {"headers": ZERO_SHOT_HEADERS, "data": zero_shot},
            gallery,
        )

    with gr.Blocks(title="neurotrain CLIP") as demo:
        gr.Markdown(
            f"## Image-text retrieval and zero-shot classification\nModel: `{model}`. Upload "
            "images and enter a text: the images ranked by cosine similarity to the text (highest "
            "first). Labels (comma-separated): each image's labels ranked by zero-shot probability, "
            f"prompts {scorer.templates}. At most {MAX_IMAGES} images, 4096 px per side and 20 MB each."
        )
        with gr.Row():
            with gr.Column():
                images = file_input("Images", ["image"], file_count="multiple")
                text = gr.Textbox(label="Text", placeholder="a small red circle at the top left")
                labels = gr.Textbox(
                    label="Zero-shot labels (comma-separated)", value=", ".join(scorer.labels)
                )
                button = gr.Button("Rank", variant="primary")
            with gr.Column():
                gallery = gr.Gallery(label="Images, ranked for the text", format="png", columns=4)
                ranking = gr.Dataframe(headers=RANKING_HEADERS, label="Images ranked for the text")
                zero_shot = gr.Dataframe(headers=ZERO_SHOT_HEADERS, label="Zero-shot labels per image")
        button.click(
            predict, inputs=[images, text, labels], outputs=[ranking, zero_shot, gallery], api_name="predict"
        )
        if files := examples_of(examples):
            gr.Examples(
                [[files, "", ", ".join(scorer.labels)]], inputs=[images, text, labels], cache_examples=False
            )
    return serve_limits(demo)

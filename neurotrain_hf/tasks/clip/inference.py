"""``ClipInference``: embeddings of a batch's images and of all their captions, for the retrieval metrics.

Evaluation batches carry every caption of every image (``caption_*`` and ``caption_owner``); the metric
inputs are per image (its unit embedding, its captions' unit embeddings, its zero-shot logits), so the
evaluation cuts the distributed padding per image and keeps no N x N matrix per batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...trainer.inference import Inference


def features(output: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (older transformers) or an output whose pooler is projected."""
    return output if torch.is_tensor(output) else output.pooler_output


def image_embeddings(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    return F.normalize(features(model.get_image_features(pixel_values=pixel_values)), dim=-1)


def text_embeddings(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    kwargs = {"attention_mask": attention_mask} if attention_mask is not None else {}
    return F.normalize(features(model.get_text_features(input_ids=input_ids, **kwargs)), dim=-1)


def text_length(tokenizer: Any, positions: int) -> int:
    """Tokens a text or prompt is padded/truncated to: the tokenizer's maximum within the text tower's
    ``positions`` (tokenizers without a maximum report a huge sentinel)."""
    own = getattr(tokenizer, "model_max_length", None)
    return min(int(own), positions) if own and own < 100_000 else positions


def prompt_tokens(tokenizer: Any, labels: list[str], templates: list[str], max_length: int) -> dict[str, Any]:
    """The zero-shot prompts (every template of every label, label-major) as padded token ids."""
    prompts = [t.format(label) for label in labels for t in templates]
    return tokenizer(
        prompts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
    )


def class_embeddings(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: Any, labels: int
) -> torch.Tensor:
    """Zero-shot classifier: each label's prompt embeddings (unit) averaged over its templates, unit length."""
    emb = text_embeddings(model, input_ids, attention_mask)
    return F.normalize(emb.view(labels, len(emb) // labels, -1).mean(1), dim=-1)


def zero_shot_probabilities(
    model: torch.nn.Module, image_embeds: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """(images, labels) probabilities: the softmax of ``logit_scale * cosine`` over the labels (SigLIP
    models: the sigmoid of ``logit_scale * cosine + logit_bias``), as ``pipeline("zero-shot-image-
    classification")`` scores them."""
    logits = image_embeds @ classes.T * model.logit_scale.exp()
    bias = getattr(model, "logit_bias", None)
    return torch.sigmoid(logits + bias) if bias is not None else logits.softmax(-1)


class ClipInference(Inference):
    """Training batches go through ``forward``; evaluation batches through the two towers separately."""

    def __init__(self) -> None:
        super().__init__(("pixel_values", "input_ids", "attention_mask"))
        self.class_embeds: torch.Tensor | None = None  # zero-shot class prompts, set per evaluation

    def __call__(self, model: torch.nn.Module, inputs: dict[str, Any]) -> Any:
        if "input_ids" in inputs:
            return model(**self.model_inputs(inputs))
        module = getattr(model, "module", model)  # DDP wrapper: the towers are methods of the model
        if "caption_input_ids" not in inputs:  # images (the Predictor), and its zero-shot prompts
            out = {"image_embeds": image_embeddings(module, inputs["pixel_values"])}
            if inputs.get("prompt_input_ids") is not None:
                classes = class_embeddings(
                    module,
                    inputs["prompt_input_ids"],
                    inputs.get("prompt_attention_mask"),
                    inputs["prompt_labels"],
                )
                out["zero_shot"] = zero_shot_probabilities(module, out["image_embeds"], classes)
            return out
        return {
            "image_embeds": image_embeddings(module, inputs["pixel_values"]),
            "text_embeds": text_embeddings(
                module, inputs["caption_input_ids"], inputs.get("caption_attention_mask")
            ),
        }

    def metric_inputs(self, outputs: Any, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        image = outputs["image_embeds"].float()
        owner = inputs["caption_owner"]
        counts = torch.bincount(owner, minlength=image.shape[0]).tolist()
        predictions: dict[str, Any] = {
            "image_embeds": image,
            "text_embeds": list(torch.split(outputs["text_embeds"].float(), counts)),
        }
        if self.class_embeds is not None:
            predictions["zero_shot"] = image @ self.class_embeds.to(image).T
        return predictions, {"labels": inputs.get("class_labels")}

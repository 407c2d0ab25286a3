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


class ClipInference(Inference):
    """Training batches go through ``forward``; evaluation batches through the two towers separately."""

    def __init__(self) -> None:
        super().__init__(("pixel_values", "input_ids", "attention_mask"))
        self.class_embeds: torch.Tensor | None = None  # zero-shot class prompts, set per evaluation

    def __call__(self, model: torch.nn.Module, inputs: dict[str, Any]) -> Any:
        if "input_ids" in inputs:
            return model(**self.model_inputs(inputs))
        module = getattr(model, "module", model)  # DDP wrapper: the towers are methods of the model
        if "caption_input_ids" not in inputs:  # images only (the Predictor)
            return {"image_embeds": image_embeddings(module, inputs["pixel_values"])}
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

"""``GenerationInference``: evaluation, the Tester and the Predictor answer through one generation call.

With labels in the batch (evaluation) the conversation's forward gives the training loss; answers are
generated from the left-padded prompt before the last assistant turn (greedy unless ``num_beams`` > 1,
at most ``max_new_tokens``), decoded without special tokens. Metric inputs are the answers and
``{"answer", "answer_type", "question"}``.
"""

from __future__ import annotations

from typing import Any

import torch

from ...trainer.inference import Inference

TEXT_KEYS = ("input_ids", "attention_mask", "labels", "prompt_input_ids", "prompt_attention_mask")
REFERENCE_KEYS = ("question", "answer", "answer_type")


def image_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The processor's image outputs (``pixel_values``, ``image_sizes``, ``image_grid_thw``, ...)."""
    return {
        k: v
        for k, v in inputs.items()
        if k not in TEXT_KEYS and k not in REFERENCE_KEYS and k != "sample_index" and torch.is_tensor(v)
    }


class GenerationInference(Inference):
    """Loss on the conversation (when labelled) and generated answers from its prompt."""

    def __init__(self, processor: Any, max_new_tokens: int = 16, num_beams: int = 1) -> None:
        super().__init__(("input_ids", "attention_mask"))
        self.processor, self.max_new_tokens, self.num_beams = processor, max_new_tokens, num_beams
        self.generate_answers = True

    def model_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {**super().model_inputs(inputs), **image_inputs(inputs)}

    def generate(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        """New token ids (batch, new) from the prompt; generation stops at the end-of-turn token."""
        tokenizer = self.processor.tokenizer
        core = getattr(model, "module", model)
        ids = inputs["prompt_input_ids"]
        out = core.generate(
            input_ids=ids,
            attention_mask=inputs["prompt_attention_mask"],
            **image_inputs(inputs),
            max_new_tokens=self.max_new_tokens,
            num_beams=self.num_beams,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        return out[:, ids.shape[1] :]

    def decode(self, tokens: torch.Tensor) -> list[str]:
        return [t.strip() for t in self.processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)]

    def __call__(self, model: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "labels" in inputs and "labels" in self.label_names:
            forward = model(**self.model_inputs(inputs))
            out["loss"], out["logits"] = forward.loss, forward.logits
        if self.generate_answers and "prompt_input_ids" in inputs:
            out["answers"] = self.decode(self.generate(model, inputs))
        return out

    def metric_inputs(self, outputs: Any, inputs: dict[str, Any]) -> tuple[Any, Any]:
        if "answers" not in outputs or "answer" not in inputs:
            return None, None
        return outputs["answers"], {k: inputs[k] for k in REFERENCE_KEYS if k in inputs}

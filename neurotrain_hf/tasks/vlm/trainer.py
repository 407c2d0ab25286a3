"""``VLMTrainer``: NeuroTrainer for image-text-to-text models (the model's own causal-LM loss).

The loss is a sum over supervised tokens divided by their count in the whole optimizer step, across
gradient accumulation and processes (``count_items``: labels other than -100 after the one-token shift),
so 1 process x 8 samples, 2 processes x 4 and 4 accumulated micro-batches of 2 give the same gradients
whatever the answers' lengths. Evaluation generates answers (``GenerationInference``) and scores them.
"""

from __future__ import annotations

from typing import Any

import torch

from ...metrics.registry import StreamingMetrics
from ...trainer.neuro_trainer import NeuroTrainer
from .config import VLMConfig
from .inference import GenerationInference
from .labels import IGNORE


class VLMTrainer(NeuroTrainer):
    """Causal-LM loss on the assistant tokens; evaluation loss plus scored generated answers."""

    def __init__(
        self,
        model: torch.nn.Module,
        args: VLMConfig,
        *,
        processor: Any = None,
        callbacks: list | None = None,
        **kwargs: Any,
    ) -> None:
        self.processor = processor
        if not args.label_names:
            args.label_names = ["labels"]  # a PEFT wrapper's forward does not name them
        names = list(args.metrics or [])
        kwargs.setdefault("metrics", StreamingMetrics(names, args.metric_families) if names else None)
        kwargs.setdefault("inference", GenerationInference(processor, args.max_new_tokens, args.num_beams))
        super().__init__(model, args, callbacks=callbacks, **kwargs)
        self._model_counts_items = True  # transformers' causal-LM loss divides by num_items_in_batch
        self.model_accepts_loss_kwargs = True

    def count_items(self, inputs: dict[str, Any]) -> torch.Tensor | None:
        """Supervised tokens of the micro-batch (the loss predicts token t+1 from t: labels[:, 1:])."""
        labels = inputs.get("labels")
        return None if labels is None else (labels[:, 1:] != IGNORE).sum()

    def per_item_loss(self, outputs: Any, inputs: dict[str, Any], batch_size: int) -> torch.Tensor | None:
        """Each conversation's mean cross-entropy over its supervised tokens."""
        logits, labels = outputs.get("logits"), inputs.get("labels")
        if logits is None or labels is None:
            return None
        logits, labels = logits[:, :-1].float(), labels[:, 1:].to(logits.device)
        losses = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="none"
        ).view(labels.shape)
        counts = (labels != IGNORE).sum(1).clamp_min(1)
        return losses.sum(1) / counts


__all__ = ["VLMTrainer"]

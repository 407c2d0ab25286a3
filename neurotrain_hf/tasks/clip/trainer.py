"""``ClipTrainer``: NeuroTrainer for contrastive image-text training (CLIP InfoNCE or SigLIP).

The model's forward gives the image and text embeddings; the loss (``loss.py``) gathers them from all
processes. The learnable temperature (and SigLIP's bias) are read by a forward hook while the forward
runs, so the loss sees them even where DeepSpeed ZeRO-3 partitions parameters outside the forward.
Evaluation embeds every caption of every image once and scores retrieval over the whole split.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from ...errors import ConfigError
from ...metrics.registry import StreamingMetrics
from ...trainer.neuro_config import deepspeed_requested
from ...trainer.neuro_trainer import NeuroTrainer
from .config import ClipConfig
from .inference import ClipInference, text_embeddings
from .loss import LOSSES, MAX_LOGIT_SCALE
from .models import freeze_tower


class ClampLogitScale(TrainerCallback):
    """After each optimizer step, clamp the log-temperature to [0, ln 100] in place (as open_clip)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.params = [p for n, p in model.named_parameters() if n.split(".")[-1] == "logit_scale"]

    def on_step_end(self, args, state, control, **kwargs):
        with torch.no_grad():
            for param in self.params:
                if param.numel():
                    param.clamp_(0, MAX_LOGIT_SCALE)


class ClipTrainer(NeuroTrainer):
    """Contrastive loss over the global batch; retrieval and zero-shot metrics from per-image embeddings."""

    def __init__(
        self,
        model: torch.nn.Module,
        args: ClipConfig,
        *,
        processor: Any = None,
        label_names: list[str] | None = None,
        max_length: int = 32,
        callbacks: list | None = None,
        **kwargs: Any,
    ) -> None:
        self.processor = processor
        self.class_names = list(label_names or [])
        self.max_length = max_length
        self.contrastive = LOSSES[args.loss]
        self._logit_params: dict[str, torch.Tensor] = {}
        core = getattr(model, "get_base_model", lambda: model)()
        if args.loss == "siglip" and getattr(core, "logit_bias", None) is None:
            raise ConfigError(
                f"[training] loss = 'siglip' needs a model with a learnable logit_bias (e.g. SiglipModel); "
                f"{type(core).__name__} has none: use loss = 'infonce'"
            )
        freeze_tower(model, args.freeze)
        core.register_forward_hook(self._keep_logit_params)
        names = list(args.metrics or [])
        kwargs.setdefault("metrics", StreamingMetrics(names, k_values=args.retrieval_k) if names else None)
        kwargs.setdefault("inference", ClipInference())
        callbacks = list(callbacks or [])
        if not deepspeed_requested(args):  # DeepSpeed keeps its own copy of the weights
            callbacks.append(ClampLogitScale(model))
        super().__init__(model, args, callbacks=callbacks, **kwargs)

    def _keep_logit_params(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        """Forward hook: the temperature and bias as used in this forward (parameters gathered)."""
        self._logit_params = {"logit_scale": module.logit_scale * 1.0}
        bias = getattr(module, "logit_bias", None)
        if bias is not None:
            self._logit_params["logit_bias"] = bias * 1.0

    def pair_loss(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """The configured contrastive loss of a batch of matching (image, text) embeddings."""
        params = self._logit_params
        options = {"gather_with_grad": self.args.gather_with_grad, "local_loss": self.args.local_loss}
        if self.args.loss == "siglip":
            return self.contrastive(
                image_embeds, text_embeds, params["logit_scale"], params["logit_bias"], **options
            )
        return self.contrastive(image_embeds, text_embeds, params["logit_scale"], **options)

    def count_items(self, inputs: dict[str, Any]) -> None:
        return None  # a batch-level loss: gradient accumulation averages over micro-batches

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**self.inference.model_inputs(inputs))
        loss = self.pair_loss(outputs.image_embeds, outputs.text_embeds)
        return (loss, outputs) if return_outputs else loss

    # --- evaluation ---------------------------------------------------------------------------------
    def class_embeddings(self, model: torch.nn.Module) -> torch.Tensor | None:
        """Zero-shot classifier: each class's prompt-template embeddings averaged, unit length."""
        if not self.class_names or self.processor is None:
            return None
        templates = self.args.zero_shot_templates
        prompts = [t.format(name) for name in self.class_names for t in templates]
        tokens = self.processor.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.args.device)
        module = getattr(model, "module", model)
        with torch.no_grad():
            emb = text_embeddings(module, tokens["input_ids"], tokens.get("attention_mask"))
        return F.normalize(emb.view(len(self.class_names), len(templates), -1).mean(1), dim=-1)

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        model = self.model
        was_training = model.training
        model.eval()
        self.inference.class_embeds = self.class_embeddings(model)
        model.train(was_training)
        try:
            return super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
        finally:
            self.inference.class_embeds = None

    def per_item_loss(self, outputs: Any, inputs: dict[str, Any], batch_size: int) -> torch.Tensor | None:
        """InfoNCE of each image against its first caption within the batch (this process's batch)."""
        scale = getattr(self.accelerator.unwrap_model(self.model), "logit_scale", None)
        if scale is None or not scale.numel() or batch_size < 2 or self.args.loss != "infonce":
            return None
        owner = inputs["caption_owner"]
        first = torch.ones_like(owner, dtype=torch.bool)
        first[1:] = owner[1:] != owner[:-1]
        image, text = outputs["image_embeds"], outputs["text_embeds"][first]
        logits = scale.clamp(0, MAX_LOGIT_SCALE).exp() * image @ text.T
        targets = torch.arange(len(image), device=image.device)
        return (
            F.cross_entropy(logits, targets, reduction="none")
            + F.cross_entropy(logits.T, targets, reduction="none")
        ) / 2

    def sample_records(self, indices, predictions, references, losses, inputs=None) -> list[dict[str, Any]]:
        image = predictions["image_embeds"]
        rows = []
        labels = references.get("labels") if references else None
        for k, index in enumerate(indices):
            texts = predictions["text_embeds"][k]
            row = {
                "index": index,
                "captions": len(texts),
                "matched_similarity": f"{float((texts @ image[k]).mean()):.6f}",
                "loss": f"{float(losses[k]):.6f}" if losses is not None else "",
            }
            if "zero_shot" in predictions and labels is not None:
                pred = int(predictions["zero_shot"][k].argmax())
                row.update(label=self.class_names[int(labels[k])], zero_shot=self.class_names[pred])
            rows.append(row)
        return rows


__all__ = ["ClipTrainer"]

"""``ClipTrainer``: NeuroTrainer for contrastive image-text training (CLIP InfoNCE or SigLIP).

The model's forward gives the image and text embeddings; the loss (``loss.py``) gathers them from all
processes. The learnable temperature (and SigLIP's bias) are read by a forward hook while the forward
runs, so the loss sees them even where DeepSpeed ZeRO-3 partitions parameters outside the forward.
Evaluation embeds every caption of every image once and scores retrieval over the whole split. The
training split is loaded through ``CaptionSampledDataset``: each image's caption is picked from (seed,
epoch, sample index), so N processes x batch B train exactly as one process on batch N*B.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch
from transformers import TrainerCallback

from ...errors import ConfigError
from ...losses import LOSSES, LossOptions
from ...metrics.registry import StreamingMetrics
from ...trainer.neuro_config import deepspeed_requested
from ...trainer.neuro_trainer import NeuroTrainer
from .config import ClipConfig
from .data import CaptionSampledDataset, ClipTransform
from .gradient_cache import cached_gradient_step
from .inference import ClipInference, class_embeddings, prompt_tokens
from .loss import MAX_LOGIT_SCALE
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
        self.contrastive = LOSSES.get(args.loss).factory(LossOptions())
        self._logit_params: dict[str, torch.Tensor] = {}
        core = getattr(model, "get_base_model", lambda: model)()
        if args.loss == "siglip" and getattr(core, "logit_bias", None) is None:
            raise ConfigError(
                f"[training] loss = 'siglip' needs a model with a learnable logit_bias (e.g. SiglipModel); "
                f"{type(core).__name__} has none: use loss = 'infonce'"
            )
        if args.contrastive_chunk and deepspeed_requested(args):
            raise ConfigError(
                "[training] contrastive_chunk runs several backward passes per step, which DeepSpeed counts "
                "as gradient-accumulation steps: use it with DDP (set contrastive_chunk = 0 under DeepSpeed)"
            )
        freeze_tower(model, args.freeze)
        core.register_forward_hook(self._keep_logit_params)
        names = list(args.metrics or [])
        metrics = StreamingMetrics(names, args.metric_families, k_values=args.retrieval_k) if names else None
        kwargs.setdefault("metrics", metrics)
        kwargs.setdefault("inference", ClipInference())
        callbacks = list(callbacks or [])
        if not deepspeed_requested(args):  # DeepSpeed keeps its own copy of the weights
            callbacks.append(ClampLogitScale(model))
        super().__init__(model, args, callbacks=callbacks, **kwargs)

    @staticmethod
    def wrap_dataset(dataset, args, indices: bool = False):
        """The training split (its transform a training ``ClipTransform``) -> ``CaptionSampledDataset``."""
        wrapped = NeuroTrainer.wrap_dataset(dataset, args, indices)
        transform = getattr(wrapped, "transform", None)
        if isinstance(dataset, datasets.Dataset) and isinstance(transform, ClipTransform) and transform.train:
            return CaptionSampledDataset(dataset, seed=wrapped.seed, index_key=wrapped.index_key)
        return wrapped

    def _keep_logit_params(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        """Forward hook: the temperature and bias as used in this forward (parameters gathered)."""
        self._logit_params = {"logit_scale": module.logit_scale * 1.0}
        bias = getattr(module, "logit_bias", None)
        if bias is not None:
            self._logit_params["logit_bias"] = bias * 1.0

    def pair_loss(
        self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, params: dict | None = None
    ) -> torch.Tensor:
        """The configured contrastive loss of a batch of matching (image, text) embeddings; ``params``:
        the temperature (and bias), by default as the model's last forward used them."""
        params = self._logit_params if params is None else params
        return self.contrastive(
            image_embeds,
            text_embeds,
            params["logit_scale"],
            params.get("logit_bias"),
            gather_with_grad=self.args.gather_with_grad,
            local_loss=self.args.local_loss,
        )

    def count_items(self, inputs: dict[str, Any]) -> None:
        return None  # a batch-level loss: gradient accumulation averages over micro-batches

    def training_step(self, model, inputs, num_items_in_batch=None):
        """With ``contrastive_chunk``: the gradient-cached step (``gradient_cache.py``), else the Trainer's."""
        chunk = self.args.contrastive_chunk
        if not chunk:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        with self.compute_loss_context_manager():
            loss = cached_gradient_step(
                model,
                self.inference.model_inputs(inputs),
                chunk,
                self.pair_loss,
                lambda: self._logit_params,
                self.accelerator.backward,
                lambda: self.accelerator.no_sync(model),
                scale=self.current_gradient_accumulation_steps,
            )
        return self.track_nonfinite(loss)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**self.inference.model_inputs(inputs))
        loss = self.pair_loss(outputs.image_embeds, outputs.text_embeds)
        return (loss, outputs) if return_outputs else loss

    # --- evaluation ---------------------------------------------------------------------------------
    def class_embeddings(self, model: torch.nn.Module) -> torch.Tensor | None:
        """Zero-shot classifier: each class's prompt-template embeddings averaged, unit length."""
        if not self.class_names or self.processor is None:
            return None
        tokens = prompt_tokens(
            self.processor.tokenizer, self.class_names, list(self.args.zero_shot_templates), self.max_length
        ).to(self.args.device)
        module = getattr(model, "module", model)
        with torch.no_grad():
            return class_embeddings(
                module, tokens["input_ids"], tokens.get("attention_mask"), len(self.class_names)
            )

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
        """The training loss of each image against its first caption, within this process's batch."""
        core = self.accelerator.unwrap_model(self.model)
        scale = getattr(core, "logit_scale", None)
        if scale is None or not scale.numel() or batch_size < 2:
            return None
        owner = inputs["caption_owner"]
        first = torch.ones_like(owner, dtype=torch.bool)
        first[1:] = owner[1:] != owner[:-1]
        image, text = outputs["image_embeds"], outputs["text_embeds"][first]
        bias = getattr(core, "logit_bias", None)
        return self.contrastive(image, text, scale, bias, gather=False, reduction="none")


__all__ = ["ClipTrainer"]

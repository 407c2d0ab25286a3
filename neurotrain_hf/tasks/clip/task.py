"""``ClipTask``: the CLIP hooks the generic runner, Tester and Predictor call.

The saved folder loads with ``CLIPModel.from_pretrained`` (or ``AutoModel``) and
``CLIPProcessor.from_pretrained``; the zero-shot label set and templates used in evaluation are
recorded in its config (``neurotrain_zero_shot``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..base import Task, TaskData
from .data import prepare
from .inference import ClipInference
from .models import build_clip_model
from .processor import BOS_ID, EOS_ID
from .trainer import ClipTrainer

ZERO_SHOT_KEY = "neurotrain_zero_shot"


class ClipTask(Task):
    """Image-text pairs -> aligned embeddings; models load with ``AutoModel`` (CLIPModel, SiglipModel)."""

    name = "clip"
    auto_model = "AutoModel"
    hub_task = "zero-shot-image-classification"
    description = "CLIP-style image-text"

    def metric_protocol(self, key: str, config: dict[str, Any]) -> str:
        if "recall@" in key:
            direction, k = key.split("_recall@")
            query = (
                "a caption retrieves its image"
                if direction == "text_to_image"
                else "an image retrieves any of its captions"
            )
            return f"recall@{k}: {query} among all held-out images/captions"
        if key == "zero_shot_accuracy":
            templates = config.get("training", {}).get("zero_shot_templates", ["a photo of a {}."])
            return f"zero-shot top-1 accuracy with prompt templates {templates}"
        return key

    def load_snippet(self, repo_id: str) -> str:
        return (
            "from transformers import AutoModel, AutoProcessor\n\n"
            f'model = AutoModel.from_pretrained("{repo_id}")  # a CLIPModel\n'
            f'processor = AutoProcessor.from_pretrained("{repo_id}")  # a CLIPProcessor'
        )

    def prepare_data(self, config) -> TaskData:
        return prepare(config)

    def build_model(self, config, data: TaskData) -> Any:
        return build_clip_model(
            config.model,
            vocab_size=len(data.processor.tokenizer),
            image_size=data.info.image_size,
            max_length=data.info.max_length,
        )

    def build_trainer(self, config, model, data: TaskData, callbacks: list | None = None):
        args = config.training
        if data.info.label_names:
            model.config.neurotrain_zero_shot = {
                "labels": data.info.label_names,
                "templates": list(args.zero_shot_templates),
            }
        return ClipTrainer(
            model,
            args,
            train_dataset=data.splits["train"],
            eval_dataset=data.splits.get("valid"),
            processor=data.processor,
            label_names=data.info.label_names,
            max_length=data.info.max_length,
            callbacks=callbacks,
        )

    def inference(self, model_config: Any = None) -> ClipInference:
        return ClipInference()

    def predictions(self, outputs: Any, model: Any) -> list[dict[str, Any]]:
        """One unit image embedding per input (rank texts or images against it)."""
        return [{"embedding": e.float().cpu().tolist()} for e in outputs["image_embeds"]]

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        emb = record["embedding"]
        return {"embedding_dim": len(emb), "embedding_head": [round(v, 4) for v in emb[:4]]}

    def probe_inputs(self, model: Any) -> dict[str, Any]:
        vision, text = model.config.vision_config, model.config.text_config
        generator = torch.Generator().manual_seed(0)
        size, length = vision.image_size, min(16, text.max_position_embeddings)
        ids = torch.randint(4, text.vocab_size, (2, length), generator=generator)
        ids[:, 0], ids[:, -1] = BOS_ID, EOS_ID
        if getattr(text, "eos_token_id", None) not in (None, EOS_ID):
            ids[:, -1] = text.eos_token_id
        return {
            "pixel_values": torch.randn(
                2, getattr(vision, "num_channels", 3), size, size, generator=generator
            ),
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
        }

    def probe_outputs(self, model: Any, inputs: dict[str, Any]) -> list[torch.Tensor]:
        out = model(**inputs)
        return [out.image_embeds.float(), out.text_embeds.float(), out.logits_per_image.float()]

"""``ClipTask``: the CLIP hooks the generic runner, Tester and Predictor call.

The saved folder loads with ``CLIPModel.from_pretrained`` (or ``AutoModel``) and
``CLIPProcessor.from_pretrained`` (and in ``pipeline("zero-shot-image-classification")``); the zero-shot
label set and templates used in evaluation are the model's settings, recorded once in its config
(``neurotrain_zero_shot``), and the Predictor scores them as that pipeline does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..base import OnnxGraph, SampleBatch, TaskData, TestOutputs, loss_text
from ..image_task import ImageTask
from .data import prepare
from .inference import ClipInference, image_embeddings, prompt_tokens, text_embeddings, text_length
from .models import build_clip_model
from .processor import BOS_ID, EOS_ID
from .trainer import ClipTrainer

ZERO_SHOT_KEY = "neurotrain_zero_shot"
DEFAULT_TEMPLATES = ["a photo of a {}."]
LORA_TARGETS = ["q_proj", "v_proj"]  # the attention projections of both towers


class ClipTask(ImageTask):
    """Image-text pairs -> aligned embeddings; models load with ``AutoModel`` (CLIPModel, SiglipModel)."""

    name = "clip"
    auto_model = "AutoModel"
    processor_class = "AutoProcessor"
    hub_task = "zero-shot-image-classification"
    description = "CLIP-style image-text"

    @classmethod
    def claims(cls, model_config: dict[str, Any]) -> bool:
        """A dual-encoder (``CLIPModel``, ``SiglipModel``): text and vision towers, no task head."""
        architectures = model_config.get("architectures") or []
        towers = bool(model_config.get("text_config") and model_config.get("vision_config"))
        return towers and all(a.endswith("Model") for a in architectures)

    def lora_targets(self, model: Any) -> list[str]:
        return list(LORA_TARGETS)

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

    def settings(self, model_config: Any) -> dict[str, Any]:
        """The zero-shot labels (possibly none) and prompt templates saved with the model, and the text
        tower's length (prompts are clamped to it)."""
        saved = getattr(model_config, ZERO_SHOT_KEY, None) or {}
        return {
            "labels": list(saved.get("labels") or []),
            "templates": list(saved.get("templates") or DEFAULT_TEMPLATES),
            "positions": int(getattr(model_config.text_config, "max_position_embeddings", 77) or 77),
        }

    def preprocess(self, processor: Any, items: Sequence[Any], settings: Any = None) -> dict[str, Any]:
        """Images as the pipelines load them (upright RGB), and the zero-shot prompts when labels are set."""
        from PIL import Image, ImageOps

        from ...data.images import decode_image

        images = []
        for item in items:
            if isinstance(item, (str, Path)):
                item = Image.open(item)
            if isinstance(item, Image.Image):
                images.append(ImageOps.exif_transpose(item).convert("RGB"))
            else:  # arrays and tensors: our decoder (any depth), as 8-bit RGB
                pixels = decode_image(item, 3)
                pixels = (pixels * 255).round() if pixels.is_floating_point() else pixels
                images.append(Image.fromarray(pixels.permute(1, 2, 0).numpy().astype("uint8")))
        inputs = dict(processor.image_processor(images=images, return_tensors="pt"))
        if settings and settings["labels"]:
            length = text_length(processor.tokenizer, settings["positions"])
            tokens = prompt_tokens(processor.tokenizer, settings["labels"], settings["templates"], length)
            inputs.update(
                prompt_input_ids=tokens["input_ids"],
                prompt_attention_mask=tokens.get("attention_mask"),
                prompt_labels=len(settings["labels"]),
            )
        return inputs

    def predictions(self, outputs: Any, model: Any, inputs=None, settings=None) -> list[dict[str, Any]]:
        """Per image: its unit embedding and, with zero-shot labels, each label's probability."""
        labels = (settings or self.settings(model.config))["labels"]
        records = [{"embedding": e.float().cpu().tolist()} for e in outputs["image_embeds"]]
        if "zero_shot" in outputs:
            for record, probs in zip(records, outputs["zero_shot"].float().cpu().tolist()):
                record["zero_shot"] = dict(zip(labels, probs))
        return records

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        emb = record["embedding"]
        out: dict[str, Any] = {"embedding_dim": len(emb), "embedding_head": [round(v, 4) for v in emb[:4]]}
        if record.get("zero_shot"):
            ranked = sorted(record["zero_shot"].items(), key=lambda kv: -kv[1])
            out["zero_shot"] = [{"label": k, "score": round(v, 6)} for k, v in ranked[:5]]
        return out

    def sample_records(self, batch: SampleBatch, out: TestOutputs) -> list[dict[str, Any]]:
        """Per image: caption count, mean similarity to its captions, zero-shot label, loss."""
        image = batch.predictions["image_embeds"]
        labels = batch.references.get("labels") if batch.references else None
        names = list(out.info.label_names)
        rows = []
        for k, index in enumerate(batch.indices):
            texts = batch.predictions["text_embeds"][k]
            row = {
                "index": index,
                "captions": len(texts),
                "matched_similarity": f"{float((texts @ image[k]).mean()):.6f}",
                "loss": loss_text(batch.losses, k),
            }
            if "zero_shot" in batch.predictions and labels is not None:
                pred = int(batch.predictions["zero_shot"][k].argmax())
                row.update(label=names[int(labels[k])], zero_shot=names[pred])
            rows.append(row)
        return rows

    def build_demo(self, folder: Path, model_name: str, examples: Any = None, **options: Any) -> Any:
        from .demo import build_demo

        return build_demo(folder, model_name, examples, **options)

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

    def onnx_graphs(self, model: Any, batch: dict[str, Any]) -> list[OnnxGraph]:
        """Two graphs, as retrieval serves them: images -> normalised image embeddings, token ids (and
        mask) -> normalised text embeddings."""
        pixels = batch["pixel_values"]
        if (
            batch.get("input_ids") is None and batch.get("caption_input_ids") is not None
        ):  # evaluation batches
            batch = {
                "input_ids": batch["caption_input_ids"],
                "attention_mask": batch.get("caption_attention_mask"),
            }
        text_inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if batch.get(k) is not None}
        return [
            OnnxGraph("image_encoder", ImageTower(model), {"pixel_values": pixels}, ["image_embeds"]),
            OnnxGraph("text_encoder", TextTower(model), text_inputs, ["text_embeds"]),
        ]

    def onnx_agreement(
        self, graph: str, reference: dict[str, Any], exported: dict[str, Any]
    ) -> dict[str, float]:
        """The share of batch rows whose retrieval ranking (cosine similarity to every row) is unchanged."""
        import numpy as np

        (ref,), (got,) = reference.values(), exported.values()
        ranks = [np.argsort(-(e @ e.T), axis=1, kind="stable") for e in (ref, got)]
        return {"same_retrieval_ranks": float((ranks[0] == ranks[1]).all(axis=1).mean())}

    def probe_outputs(self, model: Any, inputs: dict[str, Any]) -> list[torch.Tensor]:
        out = model(**inputs)
        return [out.image_embeds.float(), out.text_embeds.float(), out.logits_per_image.float()]


class ImageTower(torch.nn.Module):
    """``pixel_values -> image_embeds`` (normalised) of a CLIP / SigLIP model."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return image_embeddings(self.model, pixel_values)


class TextTower(torch.nn.Module):
    """``input_ids[, attention_mask] -> text_embeds`` (normalised) of a CLIP / SigLIP model."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return text_embeddings(self.model, input_ids, attention_mask)

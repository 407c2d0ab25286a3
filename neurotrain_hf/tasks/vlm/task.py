"""``VLMTask``: the hooks the runner, Tester, Predictor, CLI and Hub push call for image-text-to-text.

A model folder loads with ``AutoModelForImageTextToText`` + ``AutoProcessor`` and answers in
``pipeline("image-text-to-text")``; ``neurotrain predict RUN image.png --question "..."`` renders the same
chat prompt and generates greedily, so both give the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...errors import ConfigError, NeuroTrainError
from ..base import SETTINGS_KEY, OnnxGraph, SampleBatch, Task, TaskData, TestOutputs, loss_text
from . import models as _models  # noqa: F401  (registers llava_tiny)

DEFAULT_SETTINGS = {"max_new_tokens": 16, "num_beams": 1}


class VLMTask(Task):
    """Image + conversation -> generated answer (LLaVA-style models)."""

    name = "vlm"
    auto_model = "AutoModelForImageTextToText"
    processor_class = "AutoProcessor"
    hub_task = "image-text-to-text"
    description = "vision-language model (visual question answering)"

    # --- training ---------------------------------------------------------------------------------
    def prepare_data(self, config) -> TaskData:
        from .data import prepare

        return prepare(config)

    def build_model(self, config, data: TaskData) -> Any:
        from .models import VLM_MODELS, hub_model, set_stage

        args, name = config.training, config.model.name
        lora = config.peft.method != "none"
        if args.train == "lora" and not lora:
            raise ConfigError("[training] train = 'lora' needs a [peft] section (LoRA on the language model)")
        if args.train != "lora" and lora:
            raise ConfigError(
                f"[training] train = {args.train!r} trains no adapter: remove [peft] or use train = 'lora'"
            )
        if name.startswith("hf/"):
            if args.vision_tower:
                raise ConfigError(
                    "[training] vision_tower replaces the tower of a model built from a config, not of an hf/ model"
                )
            model = hub_model(
                name[3:], config.model.pretrained, args.quantization, config.model.trust_remote_code
            )
        else:
            if args.quantization != "none":
                raise ConfigError(
                    "[training] quantization applies to pretrained hf/ models (QLoRA), not to built ones"
                )
            model = VLM_MODELS.get(name)(
                dict(config.model.kwargs),
                vocab_size=len(data.processor.tokenizer),
                vision_tower=args.vision_tower,
            )
        if args.quantization != "none":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        set_stage(model, args.train, args.train_vision_tower)
        return model

    def lora_targets(self, model: Any) -> str:
        from .models import LANGUAGE_LINEAR

        return LANGUAGE_LINEAR

    def lora_trained(self, model: Any) -> list[str]:
        from .models import PROJECTOR

        def full_precision(part: str) -> bool:  # quantized weights cannot train in full
            params = [p for n, p in model.named_parameters() if part in n]
            return bool(params) and all(p.is_floating_point() for p in params)

        trained = [PROJECTOR] if full_precision(PROJECTOR) else []
        vision = [p for n, p in model.named_parameters() if "vision_tower" in n]
        if any(p.requires_grad for p in vision) and full_precision("vision_tower"):
            trained.append("vision_tower")
        return trained

    def probe_inputs(self, model: Any) -> dict[str, Any]:
        """Two random images and a prompt with their image tokens (LLaVA-family models: one token per patch)."""
        import torch

        config = model.config
        vision = getattr(config, "vision_config", None)
        token = getattr(config, "image_token_id", None)
        if getattr(config, "model_type", "") != "llava" or vision is None or token is None:
            raise NeuroTrainError(
                f"a {getattr(config, 'model_type', '?')!r} model has no probe batch here: merge its adapter with "
                "PEFT's merge_and_unload"
            )
        patches = (vision.image_size // vision.patch_size) ** 2
        generator = torch.Generator().manual_seed(0)
        text = torch.randint(5, config.text_config.vocab_size, (2, 6), generator=generator)
        ids = torch.cat([text[:, :2], torch.full((2, patches), token), text[:, 2:]], dim=1)
        pixels = torch.randn(2, 3, vision.image_size, vision.image_size, generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels}

    def onnx_graphs(self, model: Any, batch: dict[str, Any]) -> list[OnnxGraph]:
        """The vision tower + projector (images -> the language model's image-token embeddings); the
        language model's generation loop stays in PyTorch / a dedicated runtime."""
        extra = [
            k for k in ("image_sizes", "image_grid_thw", "pixel_attention_mask") if batch.get(k) is not None
        ]
        if extra or getattr(model.config, "model_type", "") != "llava":
            raise NeuroTrainError(
                f"a {getattr(model.config, 'model_type', '?')!r} model has no ONNX export here: only LLaVA-style "
                f"vision towers with fixed-size images export (this one takes {extra or 'other inputs'})"
            )
        return [
            OnnxGraph(
                "vision_projector",
                VisionProjector(model),
                {"pixel_values": batch["pixel_values"]},
                ["image_features"],
            )
        ]

    def build_trainer(self, config, model: Any, data: TaskData, callbacks: list | None = None) -> Any:
        from .trainer import VLMTrainer

        args = config.training
        core = getattr(model, "get_base_model", lambda: model)()
        setattr(
            core.config, SETTINGS_KEY, {"max_new_tokens": args.max_new_tokens, "num_beams": args.num_beams}
        )
        return VLMTrainer(
            model,
            args,
            train_dataset=data.splits["train"],
            eval_dataset=data.splits.get("valid"),
            processor=data.processor,
            callbacks=callbacks,
        )

    def settings(self, model_config: Any) -> dict[str, Any]:
        saved = getattr(model_config, SETTINGS_KEY, None) or {}
        return {**DEFAULT_SETTINGS, **saved}

    def inference(self, model_config: Any = None) -> Any:
        """Generation with the processor this task object loaded (``load_processor``) and the saved settings."""
        from .inference import GenerationInference

        if self.processor is None:
            raise NeuroTrainError(
                "the VLM task decodes answers with its processor: load it first (load_processor)"
            )
        settings = self.settings(model_config)
        return GenerationInference(self.processor, settings["max_new_tokens"], settings["num_beams"])

    # --- saved models -------------------------------------------------------------------------------
    @classmethod
    def claims(cls, model_config: dict[str, Any]) -> bool:
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        return model_config.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    def __init__(self) -> None:
        self.processor: Any = None

    def load_model(self, folder: str | Path) -> Any:
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_pretrained(str(folder))

    def load_processor(self, folder: str | Path) -> Any:
        """The processor saved beside the model (kept: generation decodes with its tokenizer)."""
        self.processor = super().load_processor(folder)
        if self.processor is None:
            raise NeuroTrainError(
                f"{folder}: no processor saved beside the model (tokenizer and image processor)"
            )
        return self.processor

    # --- prediction ---------------------------------------------------------------------------------
    def read_input(self, source: str | Path) -> dict[str, Any]:
        from ...data.images import inspect_image

        if not Path(source).is_file():
            raise NeuroTrainError(f"{source}: file not found")
        error = inspect_image(str(source))["error"]
        if error:
            raise NeuroTrainError(f"{source}: cannot read this image ({error})")
        return {"image": str(source)}

    def input_options(self, item: Any, options: dict[str, Any]) -> Any:
        """``--question`` is asked about every input image."""
        question = options.get("question")
        if not question or not str(question).strip():
            raise NeuroTrainError('give the question to ask about the image with --question "..."')
        return {**item, "question": str(question)}

    def preprocess(self, processor: Any, items: Sequence[Any], settings: Any = None) -> dict[str, Any]:
        """Each (image, question) as a one-turn chat prompt, left-padded, with the processor's image outputs."""
        import torch

        from .data import load_image, prompt_tokens
        from .labels import Encoded, pad

        conversations, images = [], []
        for item in items:
            question = str(item.get("question") or "").strip()
            if not question:
                raise NeuroTrainError("an input has no question")
            conversations.append(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            )
            images.append(load_image(item["image"]))
        ids = prompt_tokens(processor, conversations, images)
        left = pad(
            [Encoded(i, [-100] * len(i), 0) for i in ids], processor.tokenizer.pad_token_id or 0, left=True
        )
        pixels = processor.image_processor(images=images, return_tensors="pt")
        inputs = {"prompt_input_ids": left["input_ids"], "prompt_attention_mask": left["attention_mask"]}
        inputs.update({k: v for k, v in pixels.items() if torch.is_tensor(v)})
        return inputs

    def predictions(self, outputs: Any, model: Any, inputs=None, settings=None) -> list[dict[str, Any]]:
        return [{"answer": a} for a in outputs["answers"]]

    # --- test outputs -------------------------------------------------------------------------------
    def sample_records(self, batch: SampleBatch, out: TestOutputs) -> list[dict[str, Any]]:
        """Per question: the question, reference, generated answer, type, whether it is right, loss."""
        from ...metrics.vqa import answer_type, correctness

        refs = batch.references or {}
        rows = []
        for k, index in enumerate(batch.indices):
            reference, kind = refs["answer"][k], refs.get("answer_type", [""] * (k + 1))[k]
            answer = batch.predictions[k]
            rows.append(
                {
                    "index": index,
                    "question": refs.get("question", [""] * (k + 1))[k],
                    "reference": reference,
                    "answer": answer,
                    "answer_type": answer_type(kind, reference),
                    "correct": int(correctness(answer, reference, kind)),
                    "loss": loss_text(batch.losses, k),
                }
            )
        return rows

    # --- sharing ---------------------------------------------------------------------------------------
    def metric_protocol(self, key: str, config: dict[str, Any]) -> str:
        training = config.get("training", {})
        decoding = f"greedy decoding, at most {training.get('max_new_tokens', 16)} new tokens"
        what = {
            "closed_accuracy": 'accuracy on closed (yes/no) questions; an answer is read by whole words ("normal" '
            'is not "no"), an unparsed answer is wrong and every closed question is in the denominator',
            "open_recall": "mean share of the reference's words in the answer, open questions",
            "open_f1": "mean word-overlap F1 between answer and reference, open questions",
            "exact_match": "share of answers equal to the reference after lower-casing and removing punctuation "
            "and articles, every question",
            "bleu": "mean sentence BLEU (sacrebleu, effective order) of the answers, every question",
        }
        return f"{what[key]} ({decoding})" if key in what else key

    def load_snippet(self, repo_id: str) -> str:
        return (
            "from transformers import pipeline\n\n"
            f'pipe = pipeline("image-text-to-text", model="{repo_id}")\n'
            'messages = [{"role": "user", "content": [{"type": "image", "url": "image.png"}, '
            '{"type": "text", "text": "What is shown?"}]}]\n'
            'print(pipe(text=messages, return_full_text=False, max_new_tokens=16)[0]["generated_text"])'
        )

    def preview_labels(self, config: Any, count: int = 2) -> str:
        from .preview import preview

        return preview(config, count)

    def build_demo(self, folder: Path, model_name: str, examples: Any = None, **options: Any) -> Any:
        from .demo import build_demo

        return build_demo(folder, model_name, examples, **options)


class VisionProjector(torch.nn.Module):
    """``pixel_values -> image_features`` ``[batch, image tokens, text width]``: what a LLaVA model puts in
    place of its image tokens."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Any) -> Any:
        # get_image_features returns one tensor per image (a split the tracer fixes to the example batch);
        # the same steps on the whole batch: tower hidden state, CLS dropped ("default"), projector
        config, inner = self.model.config, self.model.model
        states = inner.vision_tower(pixel_values, output_hidden_states=True).hidden_states
        layer = config.vision_feature_layer
        hidden = states[layer] if isinstance(layer, int) else torch.cat([states[i] for i in layer], dim=-1)
        if config.vision_feature_select_strategy == "default":
            hidden = hidden[:, 1:]
        return inner.multi_modal_projector(hidden)

"""The processor of a VLM built from a config: a word-level tokenizer trained on the conversations'
text, a ``CLIPImageProcessor`` and a LLaVA-1.5-style chat template, assembled as a ``LlavaProcessor``.

Saved beside the model, it loads with ``AutoProcessor`` and works in ``pipeline("image-text-to-text")``.
The template renders ``USER: <image>\\n question ASSISTANT: answer</s>``; it marks no generation spans
(label masking here does not depend on them, see ``labels.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from transformers import CLIPImageProcessor, LlavaProcessor, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")
PAD_ID, UNK_ID, BOS_ID, EOS_ID, IMAGE_ID = range(5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ROLE_WORDS = ("system", "user", "assistant", ":", "\n")
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set items = [{'type': 'text', 'text': message['content']}] %}"
    "{% else %}{% set items = message['content'] %}{% endif %}"
    "{% if message['role'] == 'system' %}SYSTEM: "
    "{% elif message['role'] == 'user' %}USER: "
    "{% else %}ASSISTANT: {% endif %}"
    "{% for item in items %}{% if item['type'] == 'image' %}<image>{{ '\\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT: {% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A lower-cased word-level tokenizer of the texts' words (punctuation split off), with the role words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS[UNK_ID]))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS))

    def corpus():
        yield " ".join(ROLE_WORDS) + " USER: ASSISTANT: SYSTEM:"
        yield from texts

    tok.train_from_iterator(corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL_TOKENS[BOS_ID],
        eos_token=SPECIAL_TOKENS[EOS_ID],
        pad_token=SPECIAL_TOKENS[PAD_ID],
        unk_token=SPECIAL_TOKENS[UNK_ID],
        extra_special_tokens={"image_token": SPECIAL_TOKENS[IMAGE_ID]},
        model_max_length=max_length,
        padding_side="left",  # batched generation: prompts end where the answers start
        model_input_names=["input_ids", "attention_mask"],
    )


def build_processor(
    tokenizer: PreTrainedTokenizerFast, image_size: int, patch_size: int, image_processor: Any = None
) -> LlavaProcessor:
    """Resize to ``image_size`` squares, CLIP-normalise (or a CLIP run's own image processor); ``<image>``
    expands to one token per patch."""
    images = image_processor or CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    return LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
        image_token=SPECIAL_TOKENS[IMAGE_ID],
    )

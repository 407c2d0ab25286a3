"""Processors built from configs for the label-masking tests: the tiny LLaVA-1.5-style one of the task,
and a Qwen2-VL-style one (byte-level BPE, ChatML template with a default system turn, no generation tags)."""

from __future__ import annotations

QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
]


def qwen2vl_processor(corpus: list[str]):
    """A ``Qwen2VLProcessor``: byte-level BPE trained on ``corpus``, 28-px merge patches of 14 px."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2VLImageProcessor, Qwen2VLProcessor

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=QWEN_SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus + ["system user assistant You are a helpful assistant.\n"], trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>"},
    )
    images = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2)
    from transformers import Qwen2VLVideoProcessor

    videos = Qwen2VLVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2)
    return Qwen2VLProcessor(
        image_processor=images, tokenizer=tokenizer, video_processor=videos, chat_template=QWEN_TEMPLATE
    )


def llava_processor(
    corpus: list[str], image_size: int = 48, patch_size: int = 12, template: str | None = None
):
    """The task's own llava_tiny processor (word-level tokenizer, LLaVA-1.5-style template)."""
    from neurotrain_hf.tasks.vlm.processor import build_processor, train_tokenizer

    processor = build_processor(train_tokenizer(corpus, 512, 256), image_size, patch_size)
    if template is not None:
        processor.chat_template = template
    return processor

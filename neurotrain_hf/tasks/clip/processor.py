"""The CLIP processor of a model built from a config: a tokenizer trained on the training captions
(``tokenizers``, word-level) and a ``CLIPImageProcessor``, assembled as a ``CLIPProcessor``.

Saved beside the model, it loads with ``CLIPProcessor.from_pretrained`` / ``AutoProcessor``. Special
token ids are fixed (pad 0, unk 1, bos 2, eos 3) so the text tower pools at the end-of-text token
(CLIP pools at ``eos_token_id``; the legacy id 2 would make it pool at the largest id instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from transformers import CLIPImageProcessor, CLIPProcessor, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def train_tokenizer(captions: Iterable[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A lower-cased word-level tokenizer of the captions' words, adding start/end-of-text tokens."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS[UNK_ID]))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS))
    tok.train_from_iterator(captions, trainer)
    bos, eos = SPECIAL_TOKENS[BOS_ID], SPECIAL_TOKENS[EOS_ID]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, BOS_ID), (eos, EOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=SPECIAL_TOKENS[PAD_ID],
        unk_token=SPECIAL_TOKENS[UNK_ID],
        model_max_length=max_length,
        model_input_names=["input_ids", "attention_mask"],  # what CLIPModel takes (pipelines pass them all)
    )


def build_processor(
    tokenizer: PreTrainedTokenizerFast,
    image_size: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> CLIPProcessor:
    """Resize the short side to ``image_size``, centre-crop a square, normalise; the tokenizer beside it."""
    images = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(mean),
        image_std=list(std),
    )
    return CLIPProcessor(image_processor=images, tokenizer=tokenizer)

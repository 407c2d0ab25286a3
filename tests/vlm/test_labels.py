"""Label masking by role: only the assistant answers (and their end-of-turn tokens) are supervised, for a
LLaVA-1.5-style and a Qwen2-VL-style processor, with or without generation tags in the template; image
and pad tokens never; image tokens are never cut by max_length."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from neurotrain_hf.errors import DataError
from neurotrain_hf.tasks.vlm.data import VLMTransform, check_lengths, encode_rows
from tests.vlm.processors import llava_processor, qwen2vl_processor

CONVERSATION = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "<image>\nwhat colour is it?"},
    {"role": "assistant", "content": "red"},
    {"role": "user", "content": "and the shape?"},
    {"role": "assistant", "content": "a small circle"},
]
CORPUS = [m["content"].replace("<image>", "") for m in CONVERSATION] + ["is there a circle? yes no"]
IMAGE = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)


def supervised_runs(tokenizer, ids, labels) -> list[str]:
    """The decoded text of each run of consecutive supervised tokens."""
    runs, current = [], []
    for token, label in zip(ids, labels):
        if label != -100:
            assert label == token  # a supervised position predicts its own token
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current)), current.clear()
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def encode(processor, messages, image=IMAGE):
    rows = {"messages": [messages], "image": [image], "sample_id": ["s0"]}
    (enc,), extra = encode_rows(processor, rows, ["row 0"])
    return enc, extra


def test_llava_style_supervises_exactly_the_answers_and_their_end_tokens():
    processor = llava_processor(CORPUS)
    enc, extra = encode(processor, CONVERSATION)
    tokens = processor.tokenizer.convert_ids_to_tokens(enc.input_ids)
    supervised = [t for t, label in zip(tokens, enc.labels) if label != -100]
    assert supervised == ["red", "</s>", "a", "small", "circle", "</s>"]
    assert tokens.count("<image>") == 16 and extra["pixel_values"].shape == (1, 3, 48, 48)
    assert all(label == -100 for t, label in zip(tokens, enc.labels) if t == "<image>")


def test_qwen2vl_style_supervises_exactly_the_answers_and_their_end_tokens():
    processor = qwen2vl_processor(CORPUS)
    enc, extra = encode(processor, CONVERSATION)
    runs = supervised_runs(processor.tokenizer, enc.input_ids, enc.labels)
    assert runs == ["red<|im_end|>\n", "a small circle<|im_end|>\n"]
    pads = [i for i, t in enumerate(enc.input_ids) if t == processor.image_token_id]
    assert len(pads) == 4 and all(enc.labels[i] == -100 for i in pads)  # 56x56 px: 2x2 merged patches
    assert "image_grid_thw" in extra and extra["image_grid_thw"].tolist() == [[1, 4, 4]]
    # the template's default system turn is not supervised, nor is any user text
    assert "helpful" not in "".join(runs) and "colour" not in "".join(runs)


def test_generation_tags_in_the_template_do_not_change_the_labels():
    from neurotrain_hf.tasks.vlm.processor import CHAT_TEMPLATE

    tagged = CHAT_TEMPLATE.replace(
        "{% elif item['type'] == 'text' %}{{ item['text'] }}",
        "{% elif item['type'] == 'text' %}{% if message['role'] == 'assistant' %}{% generation %}"
        "{{ item['text'] }}{% endgeneration %}{% else %}{{ item['text'] }}{% endif %}",
    )
    assert tagged != CHAT_TEMPLATE
    plain, _ = encode(llava_processor(CORPUS), CONVERSATION)
    with_tags, _ = encode(llava_processor(CORPUS, template=tagged), CONVERSATION)
    assert with_tags.input_ids == plain.input_ids and with_tags.labels == plain.labels


def test_a_template_that_rewrites_earlier_turns_is_refused_in_one_line():
    template = "{{ messages | length }} turns\n{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    processor = llava_processor(CORPUS, template=template)
    with pytest.raises(DataError, match=r"^row 0: the chat template does not render turn by turn"):
        encode(
            processor,
            [{"role": "user", "content": "what colour is it?"}, {"role": "assistant", "content": "red"}],
        )


def test_padded_batches_supervise_no_pad_or_image_token():
    processor = llava_processor(CORPUS)
    short = [
        {"role": "user", "content": "<image>\nwhat colour is it?"},
        {"role": "assistant", "content": "red"},
    ]
    batch = {"messages": [CONVERSATION, short], "image": [IMAGE, IMAGE], "sample_id": ["a", "b"]}
    out = VLMTransform(processor, max_length=64, train=True)(batch)
    ids, labels, mask = out["input_ids"], out["labels"], out["attention_mask"]
    assert (mask[1] == 0).sum() == ids.shape[1] - len(encode(processor, short)[0].input_ids) > 0
    assert (labels[mask == 0] == -100).all() and (labels[ids == 4] == -100).all()
    assert processor.tokenizer.convert_ids_to_tokens(ids[1][labels[1] != -100].tolist()) == ["red", "</s>"]


def test_image_tokens_beyond_max_length_are_refused_or_skipped_never_cut():
    processor = llava_processor(CORPUS)
    rows = {
        "image": [IMAGE, IMAGE],
        "messages": [CONVERSATION, CONVERSATION[1:3]],
        "sample_id": ["long", "short"],
        "answer_type": ["", ""],
    }
    split = datasets.Dataset.from_dict(rows)
    full = len(encode(processor, CONVERSATION)[0].input_ids)
    image_end = len(
        encode(processor, CONVERSATION)[0].input_ids[: 7 + 16]
    )  # <s> SYSTEM: ... USER: + 16 images
    with pytest.raises(
        DataError,
        match=r"^train row 0 \(sample long\): its image tokens end at position \d+, beyond max_length 12",
    ):
        check_lengths(datasets.DatasetDict(train=split), processor, 12, skip=False)
    kept, refused, truncated = check_lengths(datasets.DatasetDict(train=split), processor, 12, skip=True)
    assert refused == {"train": 2} and len(kept["train"]) == 0
    kept, refused, truncated = check_lengths(
        datasets.DatasetDict(train=split), processor, full - 2, skip=False
    )
    assert refused == {} and truncated == {"train": 1} and len(kept["train"]) == 2
    assert image_end < full - 2

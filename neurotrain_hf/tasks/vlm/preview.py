"""``neurotrain preview-labels CFG``: rendered training samples with the supervised tokens marked, so the
masking is seen before any training (supervised tokens in ``[[...]]``; image tokens shown once with
their count)."""

from __future__ import annotations

from typing import Any

from .labels import IGNORE


def mark_tokens(tokenizer: Any, ids: list[int], labels: list[int], image_id: int | None) -> str:
    """Tokens in order; runs of supervised tokens wrapped in ``[[ ]]``, image-token runs as ``<image xN>``."""
    out: list[str] = []
    k = 0
    while k < len(ids):
        if ids[k] == image_id:
            end = k
            while end < len(ids) and ids[end] == image_id:
                end += 1
            out.append(f"<image x{end - k}>")
            k = end
            continue
        supervised = labels[k] != IGNORE
        end = k
        while end < len(ids) and ids[end] != image_id and (labels[end] != IGNORE) == supervised:
            end += 1
        text = tokenizer.decode(ids[k:end], skip_special_tokens=False)
        out.append(f"[[{text}]]" if supervised else text)
        k = end
    return " ".join(out)


def preview(config: Any, count: int = 2) -> str:
    """The first ``count`` training conversations as the model sees them, with the supervised share."""
    from ...data.registry import DATASETS
    from .data import check_rows, encode_rows, make_processor
    from .labels import image_token_id

    source = DATASETS.get(config.dataset.name)(config.dataset)
    splits, _ = check_rows(source.splits, skip=True)
    train = splits["train"]
    processor = make_processor(config, train)
    rows = train[:count]
    names = [f"train row {k} (sample {sid})" for k, sid in enumerate(rows["sample_id"])]
    encoded, _ = encode_rows(processor, rows, names)
    image_id = image_token_id(processor)
    blocks = []
    for name, enc in zip(names, encoded):
        body = mark_tokens(processor.tokenizer, enc.input_ids, enc.labels, image_id)
        blocks.append(f"--- {name}: {enc.supervised} of {len(enc.input_ids)} tokens supervised ---\n{body}")
    return "\n".join(blocks)

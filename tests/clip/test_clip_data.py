"""CLIP data: synthetic set, trained tokenizer + processor round trip, caption sampling, bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from neurotrain_hf.config import build_config
from neurotrain_hf.errors import ConfigError, DataError
from neurotrain_hf.tasks.clip.data import ClipTransform, prepare
from neurotrain_hf.tasks.clip.processor import EOS_ID, build_processor, train_tokenizer
from neurotrain_hf.tasks.clip.synthetic import combinations, generate


def clip_config(tmp_path, **sections):
    data = {
        "basic": {"task": "clip", "run_id": "t", "seed": 0, "output_dir": str(tmp_path / "runs")},
        "model": {"name": "clip_tiny"},
        "dataset": {"name": "synthetic_shapes", "max_samples": 200},
        "training": {"max_steps": 2, "batch_size": 16, "report_to": "none", "disable_tqdm": True},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return build_config(data)


def caption_folder(root, rows, images=("a.png", "b.JPG", "c.png", "d.png")):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in images:
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
            root / name, format="PNG" if name.lower().endswith("png") else "JPEG"
        )
    with open(root / "metadata.jsonl", "w") as f:
        for file_name, captions in rows:
            f.write(json.dumps({"file_name": file_name, "captions": captions}) + "\n")
    return root


def test_synthetic_held_out_splits_have_one_image_per_combination():
    data = generate(64, 32, seed=3, distinct=True)
    assert len({tuple(c) for c in data["captions"]}) == 64 <= len(combinations())
    assert all(len(c) == 5 for c in data["captions"])
    assert data["image"][0].shape == (32, 32, 3) and data["image"][0].dtype == np.uint8
    again = generate(64, 32, seed=3, distinct=True)
    assert all((a == b).all() for a, b in zip(data["image"], again["image"]))  # seeded


def test_trained_tokenizer_and_processor_round_trip(tmp_path):
    captions = ["a small red circle at the top left", "Large BLUE square, bottom right"]
    tokenizer = train_tokenizer(captions, vocab_size=100, max_length=12)
    processor = build_processor(tokenizer, 32)
    processor.save_pretrained(tmp_path)
    from transformers import CLIPProcessor

    loaded = CLIPProcessor.from_pretrained(tmp_path)
    a = processor(text=captions, padding="max_length", truncation=True, max_length=12, return_tensors="pt")
    b = loaded(text=captions, padding="max_length", truncation=True, max_length=12, return_tensors="pt")
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert (a["input_ids"] == EOS_ID).sum(1).tolist() == [1, 1]  # the text tower pools at this token
    long = loaded.tokenizer(" ".join(["red"] * 30), truncation=True, max_length=12)["input_ids"]
    assert len(long) == 12 and long[-1] == EOS_ID  # truncation keeps the end-of-text token
    assert loaded.tokenizer("Large blue")["input_ids"] == loaded.tokenizer("large   blue")["input_ids"]


def test_training_caption_depends_only_on_seed_epoch_and_sample_index():
    """The caption an image trains with is a function of (seed, epoch, global index): not of the batch it
    lands in, its position there, the rank/worker fetching it or torch's RNG state."""
    import datasets

    from neurotrain_hf.tasks.clip.data import CaptionSampledDataset

    captions = [[f"image{i} caption{k}" for k in range(1 + i % 4)] for i in range(12)]
    processor = build_processor(train_tokenizer([c for cs in captions for c in cs], 80, 8), 16)
    features = datasets.Features(
        {"image": datasets.Array3D((16, 16, 3), "uint8"), "captions": [datasets.Value("string")]}
    )
    images = [np.full((16, 16, 3), 10 * i, np.uint8) for i in range(12)]
    split = datasets.Dataset.from_dict({"image": images, "captions": captions}, features=features)
    split.set_transform(ClipTransform(processor, 8, train=True))

    def trained(loader, indices):
        out = loader.__getitems__(indices)
        return dict(
            zip(indices, processor.tokenizer.batch_decode(out["input_ids"], skip_special_tokens=True))
        )

    loader = CaptionSampledDataset(split, seed=3)
    torch.manual_seed(0)
    whole = trained(loader, list(range(12)))  # one process, batch 12
    torch.manual_seed(1)
    ranks = {**trained(loader, [0, 2, 4, 6, 8, 10]), **trained(loader, [1, 3, 5, 7, 9, 11])}  # 2 x 6
    singles = {i: trained(loader, [i])[i] for i in reversed(range(12))}  # 12 batches of 1, reversed
    assert whole == ranks == singles
    assert all(whole[i] in captions[i] for i in range(12))
    assert any(whole[i] != captions[i][0] for i in range(12))  # not always the first caption
    other_seed = trained(CaptionSampledDataset(split, seed=4), list(range(12)))
    assert other_seed != whole and all(other_seed[i] in captions[i] for i in range(12))
    seen = {i: set() for i in range(12)}
    for epoch in range(30):
        loader.set_epoch(epoch)
        for i, caption in trained(loader, list(range(12))).items():
            seen[i].add(caption)
    assert all(seen[i] == set(captions[i]) for i in range(12))  # each epoch re-picks: all get drawn
    loader.set_epoch(0)
    assert trained(loader, list(range(12))) == whole
    first = ClipTransform(processor, 8, train=True)({"image": images[:2], "captions": captions[:2]})
    assert processor.tokenizer.batch_decode(first["input_ids"], skip_special_tokens=True) == [
        captions[0][0],
        captions[1][0],
    ]  # read outside the training loader: the first caption


def test_clip_trainer_loads_the_training_split_with_caption_picks(tmp_path):
    from neurotrain_hf.runner import build
    from neurotrain_hf.tasks.clip.data import CaptionSampledDataset

    _, _, trainer = build(clip_config(tmp_path))
    assert type(trainer.train_dataset) is CaptionSampledDataset and trainer.train_dataset.seed == 0
    loader = trainer.get_eval_dataloader()
    assert not isinstance(loader.dataset, CaptionSampledDataset)


def test_evaluation_transform_embeds_every_caption():
    captions = [["one a", "one b", "one c"], ["two a", "two b"]]
    processor = build_processor(train_tokenizer([c for cs in captions for c in cs], 50, 8), 16)
    images = [np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 255, np.uint8)]
    evaluation = ClipTransform(processor, 8)({"image": images, "captions": captions, "label": [0, 1]})
    assert evaluation["caption_owner"].tolist() == [0, 0, 0, 1, 1]
    assert evaluation["caption_input_ids"].shape == (5, 8) and evaluation["pixel_values"].shape == (
        2,
        3,
        16,
        16,
    )


def test_caption_folder_prepares_with_counts(tmp_path):
    long = " ".join(["word"] * 40)
    rows = [
        ("a.png", ["a red thing", long]),
        ("b.JPG", ["a blue thing"]),
        ("c.png", ["green"]),
        ("d.png", ["x y"]),
    ]
    root = caption_folder(tmp_path / "data", rows)
    config = clip_config(
        tmp_path,
        dataset={
            "name": "captions_folder",
            "root": str(root),
            "valid_ratio": 0.25,
            "test_ratio": 0.25,
            "max_samples": None,
        },
        training={"max_text_length": 16},
    )
    data = prepare(config)
    assert sum(data.report["dataset"]["images"].values()) == 4
    assert sum(data.report["truncated_captions"].values()) == 1
    # a model built from a config carries its own input size: image files are resized to it, not to 224
    assert data.info.image_size == 32 and data.info.max_length == 16
    assert data.processor.image_processor.crop_size["height"] == 32


def test_empty_caption_names_the_row_or_is_skipped(tmp_path):
    rows = [("a.png", ["fine"]), ("b.JPG", ["  "]), ("c.png", ["ok"]), ("d.png", ["also ok", ""])]
    root = caption_folder(tmp_path / "data", rows)
    config = clip_config(
        tmp_path, dataset={"name": "captions_folder", "root": str(root), "max_samples": None}
    )
    with pytest.raises(DataError) as err:
        prepare(config)
    message = str(err.value)
    assert "\n" not in message and "empty caption" in message and "row 1" in message and "b.JPG" in message
    config = clip_config(
        tmp_path,
        dataset={
            "name": "captions_folder",
            "root": str(root),
            "skip_bad_samples": True,
            "valid_ratio": 0.34,
            "test_ratio": 0.0,
            "max_samples": None,
        },
    )
    data = prepare(config)
    assert data.report["skipped_empty_captions"] == {"train": 2}
    assert sum(data.report["dataset"]["images"].values()) == 3  # b.JPG had no caption left


def test_missing_or_corrupt_image_names_the_file(tmp_path):
    rows = [("a.png", ["one"]), ("b.JPG", ["two"]), ("c.png", ["three"]), ("gone.png", ["four"])]
    root = caption_folder(tmp_path / "data", rows)
    (root / "c.png").write_bytes(b"not a png")
    config = clip_config(
        tmp_path, dataset={"name": "captions_folder", "root": str(root), "max_samples": None}
    )
    with pytest.raises(DataError) as err:
        prepare(config)
    assert "\n" not in str(err.value) and ("c.png" in str(err.value) or "gone.png" in str(err.value))
    config = clip_config(
        tmp_path,
        dataset={
            "name": "captions_folder",
            "root": str(root),
            "skip_bad_samples": True,
            "valid_ratio": 0.0,
            "test_ratio": 0.0,
            "max_samples": None,
        },
    )
    data = prepare(config)
    assert data.report["skipped_samples"] == {"train": 2}
    assert sorted(f.split("/")[-1] for f in data.report["skipped_files"]["train"]) == ["c.png", "gone.png"]


def test_a_model_that_is_not_clip_like_is_refused_in_one_line(tmp_path):
    from transformers import ViTConfig, ViTModel

    folder = tmp_path / "vit"
    ViTModel(
        ViTConfig(
            image_size=16,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=8,
        )
    ).save_pretrained(folder)
    config = clip_config(tmp_path, model={"name": f"hf/{folder}", "pretrained": True})
    with pytest.raises(ConfigError) as err:
        prepare(config)
    assert "not a CLIP-like model" in str(err.value) and "\n" not in str(err.value)


def test_a_built_model_at_an_exploding_patch_count_is_refused_in_one_line(tmp_path):
    """clip_tiny's 4 px patches at 224 px would make 3,136 tokens per image: one line, nothing run."""
    with pytest.raises(ConfigError) as err:
        prepare(clip_config(tmp_path, augmentation={"resize": 224}))
    text = str(err.value)
    assert "3136 tokens per image" in text and "[augmentation] resize" in text and "\n" not in text
    larger = clip_config(
        tmp_path, augmentation={"resize": 64}, model={"kwargs": {"vision": {"patch_size": 8}}}
    )
    assert prepare(larger).info.image_size == 64  # 64 tokens: fine

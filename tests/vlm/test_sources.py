"""VLM dataset builders on tiny fixtures in each official layout (LLaVA json, TRL messages, VQA-RAD, SLAKE,
PathVQA, CLIP captions): exact rows, split assignment, image paths, and one-line errors."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

import neurotrain_hf.tasks.vlm.sources  # noqa: F401  (registers the six VLM datasets)
import neurotrain_hf.tasks.vlm.sources_vqa as sources_vqa
from neurotrain_hf.data.registry import DATASETS, DatasetSource
from neurotrain_hf.errors import DataError
from neurotrain_hf.tasks.vlm.config import VLMDataset

EXPECTED_FEATURES = {
    "image": datasets.Image(decode=False),
    "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
    "answer_type": datasets.Value("string"),
    "sample_id": datasets.Value("string"),
}


# --- helpers -------------------------------------------------------------------------------------
def image(path: Path, colour: int = 90, size: tuple[int, int] = (6, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new("RGB", size, (colour, 40, 90)).save(path, format=fmt)
    return path


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def build(name: str, root: Path | None = None, **kwargs) -> DatasetSource:
    cfg = VLMDataset(name=name, root=None if root is None else str(root), **kwargs)
    return DATASETS.get(name)(cfg)


def error(name: str, root: Path | None = None, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        build(name, root, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def rows(source: DatasetSource) -> dict[str, list[tuple]]:
    """Every split as ``(image path or 'bytes' or None, messages as (role, content), type, id)``; also
    checks the schema and that every path is absolute."""
    out = {}
    for split, ds in source.splits.items():
        assert ds.features == datasets.Features(EXPECTED_FEATURES), ds.features
        got = []
        for row in ds:
            img = row["image"]
            if img is not None and img["bytes"] is None:
                assert Path(img["path"]).is_absolute(), img
                img = img["path"]
            elif img is not None:
                img = "bytes"
            turns = tuple((m["role"], m["content"]) for m in row["messages"])
            got.append((img, turns, row["answer_type"], row["sample_id"]))
        out[split] = got
    return out


def vqa(question: str, answer: str) -> tuple:
    return (("user", f"<image>\n{question}"), ("assistant", answer))


def png_bytes(colour: int, size: tuple[int, int] = (5, 3)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (colour, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(value: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(value["bytes"])).convert("RGB"))


# --- LLaVA json ----------------------------------------------------------------------------------
def llava(root: Path) -> Path:
    """``train.json`` (a list; upper-case file on disk; a text-only item; LLaVA-Med ``answer_type``) and
    ``llava_val.jsonl`` (JSON lines, an item without id)."""
    image(root / "coco" / "A.JPG")
    image(root / "coco" / "b.png")
    write_json(
        root / "train.json",
        [
            {
                "id": "x1",
                "image": "coco/a.jpg",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat is it?"},
                    {"from": "gpt", "value": "A cat."},
                    {"from": "human", "value": "Colour?"},
                    {"from": "gpt", "value": "Grey"},
                ],
            },
            {
                "id": 7,
                "conversations": [
                    {"from": "system", "value": "Be brief."},
                    {"from": "user", "value": "Hi"},
                    {"from": "assistant", "value": "Hello"},
                ],
            },
        ],
    )
    write_jsonl(
        root / "llava_val.jsonl",
        [
            {
                "image": ["coco/b.png"],
                "answer_type": "CLOSED ",
                "conversations": [
                    {"from": "Human", "value": "Yes? <image>"},
                    {"from": "GPT", "value": "yes"},
                ],
            }
        ],
    )
    return root


def test_llava_json_every_file_in_root(tmp_path: Path) -> None:
    got = rows(build("llava_json", llava(tmp_path)))
    a, b = str((tmp_path / "coco" / "A.JPG").absolute()), str((tmp_path / "coco" / "b.png").absolute())
    assert got == {
        "train": [
            (
                a,
                (
                    ("user", "<image>\nWhat is it?"),
                    ("assistant", "A cat."),
                    ("user", "Colour?"),
                    ("assistant", "Grey"),
                ),
                "",
                "x1",
            ),
            (None, (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello")), "", "7"),
        ],
        "valid": [(b, (("user", "Yes? <image>"), ("assistant", "yes")), "closed", "valid-0")],
    }
    assert Path(a).is_file() and Path(b).is_file()


def test_llava_data_files_and_image_folder(tmp_path: Path) -> None:
    image(tmp_path / "pics" / "q.jpg")
    turns = [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]
    write_json(
        tmp_path / "ann" / "med_instruct_60k.json", [{"id": "t", "image": "q.jpg", "conversations": turns}]
    )
    write_json(tmp_path / "ann" / "dev.json", [{"id": "v", "image": "q.jpg", "conversations": turns}])
    write_jsonl(tmp_path / "ann" / "my-test.jsonl", [{"image": "missing.jpg", "conversations": turns}] * 2)
    write_json(tmp_path / "ignored.json", [{"conversations": [{"from": "robot", "value": ""}]}])
    files = ["ann/med_instruct_60k.json", "ann/dev.json", "ann/my-test.jsonl"]
    source = build("llava_json", tmp_path, data_files=files, image_folder="pics")
    got = rows(source)
    q, missing = (
        str((tmp_path / "pics" / "q.jpg").absolute()),
        str((tmp_path / "pics" / "missing.jpg").absolute()),
    )
    assert {s: [(r[0], r[3]) for r in got[s]] for s in got} == {
        "train": [(q, "t")],
        "valid": [(q, "v")],
        "test": [(missing, "test-0"), (missing, "test-1")],  # missing files are kept: data.py reports them
    }
    assert source.label_column == "messages" and source.skipped == []


def test_llava_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = llava(tmp_path)
    data = json.loads((root / "train.json").read_text())
    data[1]["conversations"][1]["from"] = "bot"
    write_json(root / "train.json", data)
    assert error("llava_json", root) == (
        f"{root / 'train.json'}: item 1: conversations[1] has 'from' 'bot'; expected human, gpt, system, "
        "user or assistant"
    )
    with caplog.at_level(logging.WARNING):
        source = build("llava_json", root, skip_bad_samples=True)
    assert [r[3] for r in rows(source)["train"]] == ["x1"] and len(source.skipped) == 1
    assert "has 'from' 'bot'" in caplog.text
    data[1]["conversations"][1]["from"] = "user"
    data[1]["image"] = ["coco/a.jpg", "coco/b.png"]
    write_json(root / "train.json", data)
    assert (
        error("llava_json", root)
        == f"{root / 'train.json'}: item 1: 2 images; one image per conversation is supported"
    )
    (root / "train.json").write_text('[{"id": 1,}]', encoding="utf-8")
    assert error("llava_json", root).startswith(
        f"{root / 'train.json'}: not valid JSON (Expecting property name"
    )
    (root / "train.json").unlink()
    (root / "llava_val.jsonl").write_text('{"conversations": []}\n\n{oops\n', encoding="utf-8")
    assert error("llava_json", root).startswith(f"{root / 'llava_val.jsonl'}:3: not valid JSON")
    (root / "llava_val.jsonl").unlink()
    assert (
        error("llava_json", root)
        == f"[dataset] llava_json: root {str(root)!r} has no *.json, *.jsonl file; or set data_files"
    )


# --- TRL messages --------------------------------------------------------------------------------
TRL_FEATURES = datasets.Features(
    {
        "messages": [
            {
                "role": datasets.Value("string"),
                "content": [
                    {
                        "index": datasets.Value("int64"),
                        "text": datasets.Value("string"),
                        "type": datasets.Value("string"),
                    }
                ],
            }
        ],
        "images": [datasets.Image()],
    }
)


def trl_turns(question: str, answer: str, with_image: bool = True) -> list[dict]:
    user = [{"index": 0, "text": None, "type": "image"}] if with_image else []
    user += [{"index": None, "text": question, "type": "text"}]
    return [
        {"role": "user", "content": user},
        {"role": "assistant", "content": [{"index": None, "text": answer, "type": "text"}]},
    ]


def trl_hub(tmp_path: Path, extra_train: list | None = None) -> Path:
    """A ``save_to_disk`` folder like HuggingFaceH4/llava-instruct-mix-vsft: train has PIL images (stored as
    bytes) and a text-only row; validation lists image paths (relative to the folder, upper case on disk)."""
    folder = tmp_path / "hub"
    image(folder / "imgs" / "Rel.PNG")
    train = {
        "messages": [
            trl_turns("What colour?", "red"),
            trl_turns("Where?", "left"),
            trl_turns("Hi", "Hello", False),
        ],
        "images": [[Image.new("RGB", (5, 3), (200, 0, 0))], [Image.new("RGB", (2, 2))], []],
    }
    for messages, images in extra_train or []:
        train["messages"].append(messages)
        train["images"].append(images)
    valid = {"messages": [trl_turns("Shape?", "round")], "images": [["imgs/rel.png"]]}
    path_features = datasets.Features({**TRL_FEATURES, "images": [datasets.Value("string")]})
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(train, features=TRL_FEATURES),
            "validation": datasets.Dataset.from_dict(valid, features=path_features),
        }
    ).save_to_disk(str(folder))
    return folder


def test_trl_hub_folder(tmp_path: Path) -> None:
    folder = trl_hub(tmp_path)
    source = build("trl_messages", hub_id=str(folder))
    got = rows(source)
    rel = str((folder / "imgs" / "Rel.PNG").absolute())
    assert got == {
        "train": [
            ("bytes", vqa("What colour?", "red"), "", "train-0"),
            ("bytes", vqa("Where?", "left"), "", "train-1"),
            (None, (("user", "Hi"), ("assistant", "Hello")), "", "train-2"),
        ],
        "valid": [(rel, vqa("Shape?", "round"), "", "valid-0")],
    }
    first = source.splits["train"][0]["image"]
    np.testing.assert_array_equal(pixels(first), np.full((3, 5, 3), (200, 0, 0), dtype=np.uint8))


def test_trl_two_images_in_a_row(tmp_path: Path) -> None:
    two = [Image.new("RGB", (2, 2)), Image.new("RGB", (2, 2))]
    folder = trl_hub(tmp_path, [(trl_turns("Both?", "yes"), two)])
    label = f"[dataset] hub_id {str(folder)!r}: train"
    assert (
        error("trl_messages", hub_id=str(folder))
        == f"{label} row 3: 2 images; one image per conversation is supported"
    )
    source = build("trl_messages", hub_id=str(folder), skip_bad_samples=True)
    assert [r[1] for r in rows(source)["train"]] == [
        vqa("What colour?", "red"),
        vqa("Where?", "left"),
        (("user", "Hi"), ("assistant", "Hello")),
    ]
    assert source.skipped == [f"{label} row 3: 2 images; one image per conversation is supported"]


def test_trl_data_files(tmp_path: Path) -> None:
    """jsonl with path images (case differs on disk) and string content; parquet with embedded bytes."""
    image(tmp_path / "media" / "X.JPG")
    write_jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "Answer briefly."},
                    {"role": "user", "content": [{"type": "text", "text": "Look: "}, {"type": "image"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
                ],
                "images": ["media/x.jpg"],
                "id": "j0",
            },
            {
                "messages": [
                    {"role": "user", "content": "<image>\nname?"},
                    {"role": "assistant", "content": "x"},
                ],
                "images": ["media/x.jpg"],
            },
        ],
    )
    test = datasets.Dataset.from_dict(
        {"messages": [trl_turns("Which?", "this one")], "images": [[{"bytes": png_bytes(30), "path": None}]]},
        features=TRL_FEATURES,
    )
    test.to_parquet(str(tmp_path / "data" / "test-00000.parquet"))
    write_json(
        tmp_path / "more.json",
        [{"messages": [{"role": "user", "content": "t"}, {"role": "assistant", "content": "u"}]}],
    )
    files = ["train.jsonl", "data/test-00000.parquet", "more.json"]
    source = build("trl_messages", tmp_path, data_files=files)
    x = str((tmp_path / "media" / "X.JPG").absolute())
    assert rows(source) == {
        "train": [
            (x, (("system", "Answer briefly."), ("user", "Look: <image>"), ("assistant", "ok")), "", "j0"),
            (x, (("user", "<image>\nname?"), ("assistant", "x")), "", "train-1"),
            (None, (("user", "t"), ("assistant", "u")), "", "train-2"),  # a second train file
        ],
        "test": [("bytes", vqa("Which?", "this one"), "", "test-0")],
    }
    np.testing.assert_array_equal(
        pixels(source.splits["test"][0]["image"]), np.full((3, 5, 3), (30, 0, 0), np.uint8)
    )
    write_jsonl(tmp_path / "train.jsonl", [{"messages": [], "images": ["a.jpg", "b.jpg"]}])
    assert error("trl_messages", tmp_path, data_files=["train.jsonl"]) == (
        f"{tmp_path / 'train.jsonl'}:1: 2 images; one image per conversation is supported"
    )


# --- VQA-RAD -------------------------------------------------------------------------------------
def vqa_rad_osf(root: Path) -> Path:
    """``VQA_RAD Dataset Public.json`` + ``VQA_RAD Image Folder/``: a numeric answer, odd answer types, an
    image listed in lower case and saved in upper case."""
    folder = root / "VQA_RAD Image Folder"
    image(folder / "synpic100.JPG")
    image(folder / "synpic200.jpg")
    base = {"image_organ": "HEAD", "evaluation": "given", "question_type": "PRES"}
    items = [
        {
            **base,
            "qid": 1,
            "image_name": "synpic100.jpg",
            "question": "Is there a mass?",
            "answer": "Yes",
            "answer_type": "CLOSED",
            "phrase_type": "freeform",
        },
        {
            **base,
            "qid": 2,
            "image_name": "synpic100.jpg",
            "question": "How many lesions?",
            "answer": 2,
            "answer_type": "OPEN ",
            "phrase_type": "para",
        },
        {
            **base,
            "qid": 3,
            "image_name": "synpic200.jpg",
            "question": "Is this an MRI?",
            "answer": "no",
            "answer_type": "closed ",
            "phrase_type": "test_freeform",
        },
        {
            **base,
            "qid": 4,
            "image_name": "synpic200.jpg",
            "question": "What organ?",
            "answer": "brain",
            "answer_type": "Open",
            "phrase_type": "test_para",
        },
    ]
    write_json(root / "VQA_RAD Dataset Public.json", items)
    return root


def test_vqa_rad_osf(tmp_path: Path) -> None:
    root = vqa_rad_osf(tmp_path)
    p100 = str((root / "VQA_RAD Image Folder" / "synpic100.JPG").absolute())
    p200 = str((root / "VQA_RAD Image Folder" / "synpic200.jpg").absolute())
    assert rows(build("vqa_rad", root)) == {
        "train": [
            (p100, vqa("Is there a mass?", "Yes"), "closed", "1"),
            (p100, vqa("How many lesions?", "2"), "open", "2"),
        ],
        "test": [
            (p200, vqa("Is this an MRI?", "no"), "closed", "3"),
            (p200, vqa("What organ?", "brain"), "open", "4"),
        ],
    }
    assert error("vqa_rad", tmp_path / "elsewhere").startswith("[dataset] vqa_rad: root")
    (root / "VQA_RAD Dataset Public.json").write_text("[{]", encoding="utf-8")
    assert error("vqa_rad", root).startswith(f"{root / 'VQA_RAD Dataset Public.json'}: not valid JSON")


def hub_vqa(folder: Path, splits: dict[str, list[tuple[str, str]]]) -> Path:
    """A ``save_to_disk`` folder like flaviagiammarino/vqa-rad or path-vqa: image, question, answer."""
    features = datasets.Features(
        {"image": datasets.Image(), "question": datasets.Value("string"), "answer": datasets.Value("string")}
    )
    parts = {}
    for split, pairs in splits.items():
        images = [Image.new("RGB", (3, 3), (10 * i, 0, 0)) for i in range(len(pairs))]
        parts[split] = datasets.Dataset.from_dict(
            {"image": images, "question": [q for q, _ in pairs], "answer": [a for _, a in pairs]},
            features=features,
        )
    datasets.DatasetDict(parts).save_to_disk(str(folder))
    return folder


def test_vqa_rad_hub(tmp_path: Path) -> None:
    folder = hub_vqa(
        tmp_path / "hub",
        {"train": [("is it a ct?", "yes"), ("where?", "left lung")], "test": [("organ?", "liver")]},
    )
    source = build("vqa_rad", hub_id=str(folder))
    assert rows(source) == {
        "train": [
            ("bytes", vqa("is it a ct?", "yes"), "", "train-0"),
            ("bytes", vqa("where?", "left lung"), "", "train-1"),
        ],
        "test": [("bytes", vqa("organ?", "liver"), "", "test-0")],
    }
    np.testing.assert_array_equal(
        pixels(source.splits["train"][1]["image"]), np.full((3, 3, 3), (10, 0, 0), np.uint8)
    )


# --- SLAKE ---------------------------------------------------------------------------------------
def slake_official(root: Path) -> Path:
    """SLAKE 1.0: ``train.json`` / ``validate.json`` / ``test.json`` with English and Chinese questions and
    ``imgs/xmlab<N>/source.jpg``."""
    image(root / "imgs" / "xmlab1" / "source.jpg")
    image(root / "imgs" / "xmlab2" / "Source.JPG")

    def item(qid: int, img: int, question: str, answer: str, kind: str, lang: str = "en") -> dict:
        return {
            "img_id": img,
            "img_name": f"xmlab{img}/source.jpg",
            "question": question,
            "answer": answer,
            "q_lang": lang,
            "location": "Lung",
            "modality": "CT",
            "answer_type": kind,
            "base_type": "vqa",
            "content_type": "Modality",
            "triple": ["vhead", "_", "_"],
            "qid": qid,
        }

    write_json(
        root / "train.json",
        [
            item(1, 1, "What modality is used?", "CT", "OPEN"),
            item(2, 1, "这是什么成像方式?", "CT", "OPEN", "zh"),
            item(3, 1, "Is the lung healthy?", "Yes", "CLOSED"),
        ],
    )
    write_json(
        root / "validate.json",
        [item(4, 2, "Which organ?", "Heart", "OPEN"), item(5, 2, "心脏在哪里?", "左", "OPEN", "zh")],
    )
    write_json(root / "test.json", [item(6, 2, "Is it abnormal?", "No", "CLOSED")])
    return root


def slake_expected(root: Path) -> dict:
    one, two = (
        (root / "imgs" / "xmlab1" / "source.jpg").absolute(),
        (root / "imgs" / "xmlab2" / "Source.JPG").absolute(),
    )
    return {
        "train": [
            (str(one), vqa("What modality is used?", "CT"), "open", "1"),
            (str(one), vqa("Is the lung healthy?", "Yes"), "closed", "3"),
        ],
        "valid": [(str(two), vqa("Which organ?", "Heart"), "open", "4")],
        "test": [(str(two), vqa("Is it abnormal?", "No"), "closed", "6")],
    }


def test_slake_root_and_local_hub_folder(tmp_path: Path) -> None:
    root = slake_official(tmp_path / "Slake1.0")
    assert rows(build("slake", root)) == slake_expected(root)
    assert rows(build("slake", hub_id=str(root))) == slake_expected(root)
    (root / "train.json").unlink()
    assert "has no train.json" in error("slake", root)


def test_slake_hub_repo_extracts_imgs_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BoKelvin/SLAKE: the json files (``validation.json``) and ``imgs.zip``; the download is replaced."""
    made = slake_official(tmp_path / "made")
    repo = tmp_path / "snapshot" / "abc123"
    repo.mkdir(parents=True)
    for name, target in (
        ("train.json", "train.json"),
        ("validate.json", "validation.json"),
        ("test.json", "test.json"),
    ):
        (repo / target).write_bytes((made / name).read_bytes())
    with zipfile.ZipFile(repo / "imgs.zip", "w") as archive:
        for path in sorted((made / "imgs").rglob("*")):
            archive.write(path, path.relative_to(made).as_posix())
    monkeypatch.setattr(sources_vqa, "snapshot", lambda cfg: repo)
    source = build("slake", hub_id="BoKelvin/SLAKE", cache_dir=str(tmp_path / "cache"))
    extracted = tmp_path / "cache" / "slake" / "BoKelvin_SLAKE_abc123"
    assert rows(source) == slake_expected(extracted)
    assert (extracted / "imgs" / "xmlab2" / "Source.JPG").is_file()


# --- PathVQA -------------------------------------------------------------------------------------
def pvqa(parent: Path) -> Path:
    """``pvqa/qas/<split>/<split>_qa.pkl`` (pickled lists of dicts) and ``pvqa/images/<split>/<image>.jpg``."""
    base = parent / "pvqa"
    qas = {
        "train": [
            {"image": "train_0001", "question": "Is this necrosis?", "answer": "Yes"},
            {"image": "train_0002", "question": "What is present?", "answer": "fibrosis"},
        ],
        "val": [{"image": "val_0001", "question": "does this show x?", "answer": "no"}],
        "test": [{"image": "test_0001", "question": "What organ?", "answer": "liver"}],
    }
    for split, items in qas.items():
        (base / "qas" / split).mkdir(parents=True, exist_ok=True)
        (base / "qas" / split / f"{split}_qa.pkl").write_bytes(pickle.dumps(items, protocol=2))
        for item in items:
            image(
                base
                / "images"
                / split
                / (item["image"] + (".JPG" if item["image"] == "train_0002" else ".jpg"))
            )
    return base


def test_pathvqa_official_root_or_pvqa(tmp_path: Path) -> None:
    base = pvqa(tmp_path)
    img = lambda split, name: str((base / "images" / split / name).absolute())  # noqa: E731
    expected = {
        "train": [
            (img("train", "train_0001.jpg"), vqa("Is this necrosis?", "Yes"), "closed", "train-0"),
            (img("train", "train_0002.JPG"), vqa("What is present?", "fibrosis"), "open", "train-1"),
        ],
        "valid": [(img("val", "val_0001.jpg"), vqa("does this show x?", "no"), "closed", "valid-0")],
        "test": [(img("test", "test_0001.jpg"), vqa("What organ?", "liver"), "open", "test-0")],
    }
    assert rows(build("pathvqa", tmp_path)) == expected
    assert rows(build("pathvqa", base)) == expected


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pathvqa_refuses_a_pickle_that_runs_code(tmp_path: Path) -> None:
    base = pvqa(tmp_path)
    marker = tmp_path / "pwned"
    path = base / "qas" / "train" / "train_qa.pkl"
    path.write_bytes(pickle.dumps([{"image": "train_0001", "question": "q", "answer": _Evil(marker)}]))
    message = error("pathvqa", tmp_path)
    assert message.startswith(f"{path}: refused: the pickle asks for posix.system") or message.startswith(
        f"{path}: refused: the pickle asks for os.system"
    )
    assert not marker.exists()
    path.write_bytes(b"not a pickle")
    assert error("pathvqa", tmp_path).startswith(f"{path}: not a readable pickle")
    path.unlink()
    assert error("pathvqa", tmp_path).startswith(f"{path}: file not found")


def test_pathvqa_hub(tmp_path: Path) -> None:
    folder = hub_vqa(
        tmp_path / "hub",
        {
            "train": [("is it benign?", "Yes"), ("what is seen?", "cells")],
            "validation": [("x?", "no")],
            "test": [("y?", "gland")],
        },
    )
    got = rows(build("pathvqa", hub_id=str(folder)))
    assert got == {
        "train": [
            ("bytes", vqa("is it benign?", "Yes"), "closed", "train-0"),
            ("bytes", vqa("what is seen?", "cells"), "open", "train-1"),
        ],
        "valid": [("bytes", vqa("x?", "no"), "closed", "valid-0")],
        "test": [("bytes", vqa("y?", "gland"), "open", "test-0")],
    }


# --- CLIP captions -------------------------------------------------------------------------------
def test_captions_from_a_caption_folder(tmp_path: Path) -> None:
    image(tmp_path / "train" / "a.jpg")
    image(tmp_path / "train" / "B.JPG")
    image(tmp_path / "valid" / "c.jpg")
    metadata = [
        {"file_name": "train/a.jpg", "captions": ["a red circle", "red round shape"]},
        {"file_name": "train/b.jpg", "captions": "a blue square"},
        {"file_name": "valid/c.jpg", "captions": ["green cross", "a cross"]},
    ]
    write_jsonl(tmp_path / "metadata.jsonl", metadata)
    source = build("captions", tmp_path, caption_dataset="captions_folder", caption_prompt="What is shown?")
    a, b, c = (str((tmp_path / p).absolute()) for p in ("train/a.jpg", "train/B.JPG", "valid/c.jpg"))
    prompt = ("user", "<image>\nWhat is shown?")
    assert rows(source) == {
        "train": [
            (a, (prompt, ("assistant", "a red circle")), "open", "train/a.jpg#0"),
            (a, (prompt, ("assistant", "red round shape")), "open", "train/a.jpg#1"),
            (b, (prompt, ("assistant", "a blue square")), "open", "train/B.JPG#0"),
        ],
        "valid": [(c, (prompt, ("assistant", "green cross")), "open", "valid/c.jpg#0")],
    }


def test_captions_from_synthetic_shapes_become_png_bytes(tmp_path: Path) -> None:
    source = build("captions", caption_dataset="synthetic_shapes", max_samples=2, caption_prompt="Describe.")
    from neurotrain_hf.tasks.clip.config import ClipDataset

    clip = DATASETS.get("synthetic_shapes")(ClipDataset(name="synthetic_shapes", max_samples=2)).splits
    for split, ds in source.splits.items():
        per_image = 5 if split == "train" else 1
        assert len(ds) == per_image * len(clip[split])
        for i, row in enumerate(ds.select(range(0, len(ds), per_image))):
            assert row["image"]["path"] is None
            np.testing.assert_array_equal(
                pixels(row["image"]), np.asarray(clip[split][i]["image"], dtype=np.uint8)
            )
            assert row["messages"] == [
                {"role": "user", "content": "<image>\nDescribe."},
                {"role": "assistant", "content": clip[split][i]["captions"][0]},
            ]
    assert [m[1]["content"] for m in source.splits["train"]["messages"][:5]] == clip["train"][0]["captions"]

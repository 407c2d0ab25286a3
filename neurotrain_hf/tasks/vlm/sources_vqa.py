"""VQA dataset builders: VQA-RAD, SLAKE and PathVQA, from their official layouts or the Hub (rows of
``image``, ``question``, ``answer``); PathVQA's pickles are loaded refusing any class."""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource, register_dataset
from ...data.splits import load_hub
from ...errors import DataError, first_line
from .source_files import (
    MARKER,
    Bad,
    Files,
    Row,
    absolute_paths,
    answer_kind,
    dataset_root,
    hub_base,
    image_path,
    image_storage,
    python_split,
    read_records,
    require_columns,
    row_ids,
    to_dataset,
    to_source,
)

VQA_RAD_JSON = "VQA_RAD Dataset Public.json"
VQA_RAD_IMAGES = "VQA_RAD Image Folder"
SLAKE_FILES = {
    "train": ("train.json",),
    "valid": ("validate.json", "validation.json"),
    "test": ("test.json",),
}
PVQA_SPLITS = {"train": "train", "val": "valid", "test": "test"}


# --- VQA turns and the Hub layout (rows of image, question, answer) ------------------------------
def _vqa_messages(question: object, answer: object) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": f"{MARKER}\n{question}"},
        {"role": "assistant", "content": str(answer)},
    ]


def _yes_no(answer: object) -> str:
    return "closed" if str(answer).strip().lower() in ("yes", "no") else "open"


def _hub_vqa(cfg: DatasetConfig, name: str, kind_of: Callable[[object], str]) -> DatasetSource:
    """A Hub (or ``save_to_disk``) VQA dataset: ``image``, ``question``, ``answer`` (+ ``answer_type``,
    ``q_lang``: English kept); ``kind_of(answer)`` gives the answer type where no column does."""
    dsd, base, files = load_hub(cfg, None), hub_base(cfg), Files()
    splits = {}
    for split, ds in dsd.items():
        where = f"[dataset] hub_id {cfg.hub_id!r}: {split}"
        table = ds.with_format("arrow")[:]
        require_columns(where, table, ("image", "question", "answer"), "image, question and answer")
        keep = list(range(table.num_rows))
        if "q_lang" in table.column_names:
            keep = [i for i, lang in enumerate(table.column("q_lang").to_pylist()) if lang in (None, "en")]
        images = absolute_paths(image_storage(table.column("image"), f"{where} column 'image'"), base, files)
        types = table.column("answer_type").to_pylist() if "answer_type" in table.column_names else None
        questions, answers = table.column("question").to_pylist(), table.column("answer").to_pylist()
        ids = row_ids(table)
        rows = [
            (
                None,
                _vqa_messages(questions[i], answers[i]),
                answer_kind(types[i]) if types else kind_of(answers[i]),
                ids[i],
            )
            for i in keep
        ]
        if len(keep) != table.num_rows:
            images = images.take(pa.array(keep, type=pa.int64()))
        splits[split] = to_dataset(split, images, rows)
    return to_source(name, splits)


# --- VQA-RAD -------------------------------------------------------------------------------------
VQA_RAD_EXPECTED = f"{VQA_RAD_JSON!r} and {VQA_RAD_IMAGES!r}/ (OSF layout), or set hub_id"


def _vqa_item(item: object, where: str, keys: tuple[str, str, str]) -> str | None:
    """Why an item is not ``{image, question, answer}`` (``keys`` names them), or None."""
    if not isinstance(item, dict):
        return f"{where}: expected an object with {', '.join(keys)}"
    image, question, answer = keys
    qid = f" (qid {item['qid']})" if "qid" in item else ""
    if not isinstance(item.get(image), str) or not item[image].strip():
        return f"{where}{qid}: no {image!r} file name"
    if not isinstance(item.get(question), str):
        return f"{where}{qid}: no {question!r} string"
    if item.get(answer) is None or isinstance(item[answer], dict | list):
        return f"{where}{qid}: no {answer!r} (a string or a number)"
    return None


def _vqa_row(item: dict, image: Path, kind: str, question: str = "question") -> Row:
    qid = None if item.get("qid") is None else str(item["qid"])
    return image_path(image), _vqa_messages(item[question], item["answer"]), kind, qid


@register_dataset("vqa_rad")
def vqa_rad(cfg: DatasetConfig) -> DatasetSource:
    """VQA-RAD: the OSF ``VQA_RAD Dataset Public.json`` (``test_*`` phrase types -> test) with its image
    folder, or the Hub layout (``hub_id``, e.g. flaviagiammarino/vqa-rad: no answer types)."""
    if cfg.root is None and cfg.hub_id:
        return _hub_vqa(cfg, "vqa_rad", lambda answer: "")
    root, files, bad = dataset_root(cfg, "vqa_rad", VQA_RAD_EXPECTED), Files(), Bad(cfg)
    path = files(root, VQA_RAD_JSON)
    if not path.is_file():
        raise DataError(
            f"[dataset] vqa_rad: root {str(root)!r} has no {VQA_RAD_JSON!r}; expected {VQA_RAD_EXPECTED}"
        )
    folder, splits = files(root, VQA_RAD_IMAGES), {"train": [], "test": []}
    for where, item in read_records(path):
        problem = _vqa_item(item, where, ("image_name", "question", "answer"))
        if problem:
            bad(problem)
            continue
        split = "test" if str(item.get("phrase_type") or "").strip().lower().startswith("test") else "train"
        image = files(folder, item["image_name"].strip())
        splits[split].append(_vqa_row(item, image, answer_kind(item.get("answer_type"))))
    return to_source("vqa_rad", {s: python_split(s, rows) for s, rows in splits.items()}, bad)


# --- SLAKE ---------------------------------------------------------------------------------------
SLAKE_EXPECTED = "train.json, validate.json, test.json and imgs/ (SLAKE 1.0), or set hub_id"


def _cache(cfg: DatasetConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    return Path(os.environ.get("NEUROTRAIN_CACHE") or Path.home() / ".cache" / "neurotrain")


def snapshot(cfg: DatasetConfig) -> Path:
    """The json files and ``imgs.zip`` of a Hub dataset repo (huggingface_hub's cache)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id=cfg.hub_id,
                repo_type="dataset",
                revision=cfg.revision,
                cache_dir=cfg.cache_dir,
                allow_patterns=["*.json", "imgs.zip"],
            )
        )
    except Exception as exc:  # noqa: BLE001 - any download failure is one line naming the id
        raise DataError(f"[dataset] hub_id {cfg.hub_id!r}: {first_line(exc)}") from None


def _slake_hub(cfg: DatasetConfig, files: Files) -> tuple[Path, Path] | None:
    """``(json folder, image folder)`` of a local or Hub folder in the official layout (``imgs.zip`` is
    extracted once to the cache), or None for a Hub dataset of rows (``image``, ``question``, ...)."""
    local = Path(cfg.hub_id).expanduser()
    if local.is_dir():
        return (local, files(local, "imgs")) if files(local, "train.json").is_file() else None
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", cfg.hub_id):  # not a Hub repo id: load_dataset decides
        return None
    folder = snapshot(cfg)
    if not files(folder, "train.json").is_file():
        return None
    if files(folder, "imgs").is_dir() or not files(folder, "imgs.zip").is_file():
        return folder, files(folder, "imgs")
    target = _cache(cfg) / "slake" / re.sub(r"\W", "_", f"{cfg.hub_id}-{folder.name}")
    if not (target / ".extracted").is_file():
        try:
            with zipfile.ZipFile(files(folder, "imgs.zip")) as archive:
                archive.extractall(target)  # names with .. or a leading / are sanitised by zipfile
        except (OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"{files(folder, 'imgs.zip')}: cannot be extracted ({first_line(exc)})") from None
        (target / ".extracted").write_text("ok\n", encoding="utf-8")
    return folder, files(target, "imgs") if files(target, "imgs").is_dir() else target


@register_dataset("slake")
def slake(cfg: DatasetConfig) -> DatasetSource:
    """SLAKE 1.0 (English questions): ``train.json``, ``validate.json``, ``test.json`` and ``imgs/``, in root or
    in a ``hub_id`` folder / repo (BoKelvin/SLAKE: its ``imgs.zip`` is extracted once)."""
    files, bad = Files(), Bad(cfg)
    if cfg.root is None and cfg.hub_id:
        found = _slake_hub(cfg, files)
        if found is None:
            return _hub_vqa(cfg, "slake", lambda answer: "")
        folder, images = found
    else:
        folder = dataset_root(cfg, "slake", SLAKE_EXPECTED)
        images = files(folder, "imgs")
    splits: dict[str, list[Row]] = {}
    for split, names in SLAKE_FILES.items():
        path = next((files(folder, n) for n in names if files(folder, n).is_file()), None)
        if path is None:
            if split == "train":
                raise DataError(
                    f"[dataset] slake: {str(folder)!r} has no train.json; expected {SLAKE_EXPECTED}"
                )
            continue
        rows = splits.setdefault(split, [])
        for where, item in read_records(path):
            problem = _vqa_item(item, where, ("img_name", "question", "answer"))
            if problem:
                bad(problem)
            elif str(item.get("q_lang") or "en").strip().lower() == "en":
                rows.append(
                    _vqa_row(
                        item, files(images, item["img_name"].strip()), answer_kind(item.get("answer_type"))
                    )
                )
    return to_source("slake", {s: python_split(s, rows) for s, rows in splits.items()}, bad)


# --- PathVQA -------------------------------------------------------------------------------------
PVQA_EXPECTED = (
    "pvqa/qas/{train,val,test}/<split>_qa.pkl and pvqa/images/<split>/ (root: pvqa/ or its parent)"
)


class _Refused(pickle.UnpicklingError):
    pass


class _DataOnly(pickle.Unpickler):
    """Unpickles lists, dicts, strings and numbers only: any class or function (what makes a pickle run
    code) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise _Refused(f"{module}.{name}")


def _pickle(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            return _DataOnly(f, encoding="utf-8").load()
    except _Refused as exc:
        raise DataError(
            f"{path}: refused: the pickle asks for {exc}; only lists, dicts, strings and numbers are loaded "
            "(a pickle naming a class or function can run code)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a corrupt pickle fails in many ways; all are one line
        raise DataError(f"{path}: not a readable pickle ({first_line(exc)})") from None


def _pvqa_base(root: Path, files: Files) -> Path:
    for base in (files(root, "pvqa"), root):
        if files(base, "qas").is_dir():
            return base
    raise DataError(
        f"[dataset] pathvqa: root {str(root)!r} has no pvqa/qas/ or qas/; expected {PVQA_EXPECTED}"
    )


@register_dataset("pathvqa")
def pathvqa(cfg: DatasetConfig) -> DatasetSource:
    """PathVQA: the official ``pvqa/qas/<split>/<split>_qa.pkl`` lists (loaded refusing any class) with
    ``pvqa/images/<split>/<image>.jpg``, or the Hub layout (``hub_id``); yes/no answers are closed."""
    if cfg.root is None and cfg.hub_id:
        return _hub_vqa(cfg, "pathvqa", _yes_no)
    files, bad = Files(), Bad(cfg)
    base = _pvqa_base(dataset_root(cfg, "pathvqa", PVQA_EXPECTED), files)
    splits: dict[str, list[Row]] = {}
    for part, split in PVQA_SPLITS.items():
        path = files(base, f"qas/{part}/{part}_qa.pkl")
        if not path.is_file():
            if split == "train":
                raise DataError(f"{path}: file not found; expected {PVQA_EXPECTED}")
            continue
        items = _pickle(path)
        if not isinstance(items, list):
            raise DataError(
                f"{path}: expected a list of {{'image', 'question', 'answer'}}, got {type(items).__name__}"
            )
        rows = splits.setdefault(split, [])
        for n, item in enumerate(items):
            problem = _vqa_item(item, f"{path}: item {n}", ("image", "question", "answer"))
            if problem:
                bad(problem)
                continue
            name = item["image"].strip()
            name = name if Path(name).suffix.lower() in (".jpg", ".jpeg", ".png") else f"{name}.jpg"
            rows.append(_vqa_row(item, files(base, f"images/{part}/{name}"), _yes_no(item["answer"])))
    return to_source("pathvqa", {s: python_split(s, rows) for s, rows in splits.items()}, bad)

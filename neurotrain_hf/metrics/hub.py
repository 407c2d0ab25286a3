"""Ship the metrics as evaluate modules: module folders, offline install into evaluate's cache, Spaces.

``install_modules()`` seeds ``$HF_MODULES_CACHE/evaluate_modules/metrics/neurotrain--<name>/<sha256>/``
(the layout evaluate falls back to when the Hub is unreachable or ``HF_EVALUATE_OFFLINE=1``), so
``evaluate.load("neurotrain/<name>")`` resolves with no network. ``write_space`` lays out a metric
Space (module script, metric card, ``app.py``, ``requirements.txt``); ``publish_spaces`` creates or
updates them through ``huggingface_hub``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from .cards import CARDS

NAMESPACE = "neurotrain"
GRADIO_VERSION = "6.31.0"  # the one place the Spaces' Gradio version is pinned
PACKAGE_DIR = Path(__file__).resolve().parent / "modules"


def class_name(name: str) -> str:
    from .evaluate_modules import MODULES

    return MODULES[name].__name__


def module_script(name: str) -> str:
    """The evaluate module script: a thin import of the one implementation."""
    return (
        f'"""{NAMESPACE}/{name}: {CARDS[name]["summary"]}\n\n'
        f'The implementation lives in neurotrain_hf.metrics (shared with the trainers)."""\n\n'
        f"from neurotrain_hf.metrics.evaluate_modules import {class_name(name)}  # noqa: F401\n"
    )


def metric_card(name: str, space: bool = False) -> str:
    card = CARDS[name]
    front = [
        "---",
        f"title: {card['title']}",
        "tags:",
        "- evaluate",
        "- metric",
        "- neurotrain",
        f"description: >-\n  {card['summary']}",
    ]
    if space:
        front += [
            "emoji: 📏",
            "colorFrom: blue",
            "colorTo: green",
            "sdk: gradio",
            f"sdk_version: {GRADIO_VERSION}",
            "app_file: app.py",
            "pinned: false",
        ]
    front.append("---")
    body = f"""
# Metric Card for {card["title"]}

## Metric Description
{card["summary"]}

## How to Use
```python
import evaluate
import numpy as np
{card["example"]}
```
The same implementation streams inside neurotrain's trainers (`neurotrain_hf.metrics`).

## Inputs
{card["inputs"]}

## Output Values
{card["outputs"]}

## Limitations and Bias
Inputs are checked: shape mismatches, labels outside the range, NaN scores and empty inputs raise a
`ValueError` naming the sample. See the neurotrain documentation for the exact conventions.

## Citation
```bibtex
@software{{neurotrain_hf, title = {{neurotrain_hf: NeuroTrain on the Hugging Face stack}}, year = {{2026}}}}
```
"""
    return "\n".join(front) + "\n" + body


def space_app(name: str) -> str:
    return (
        "import evaluate\n"
        "from evaluate.utils import launch_gradio_widget\n\n"
        f'module = evaluate.load("{NAMESPACE}/{name}")\n'
        "launch_gradio_widget(module)\n"
    )


def module_files(name: str) -> dict[str, str]:
    return {f"{name}.py": module_script(name), "README.md": metric_card(name)}


def space_files(name: str) -> dict[str, str]:
    return {
        f"{name}.py": module_script(name),
        "README.md": metric_card(name, space=True),
        "app.py": space_app(name),
        "requirements.txt": f"neurotrain-hf\nevaluate>=0.4.6\ngradio=={GRADIO_VERSION}\n",
    }


def write_files(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file, text in files.items():
        (folder / file).write_text(text, encoding="utf-8")
    return folder


def _modules_cache() -> Path:
    import evaluate.config

    return Path(evaluate.config.HF_MODULES_CACHE) / evaluate.config.MODULE_NAME_FOR_DYNAMIC_MODULES


def install_modules(names: list[str] | None = None, cache: Path | None = None) -> list[Path]:
    """Seed evaluate's module cache (idempotent); returns the module folders."""
    root = Path(cache) if cache is not None else _modules_cache()
    (root / "metrics").mkdir(parents=True, exist_ok=True)
    for init in (root / "__init__.py", root / "metrics" / "__init__.py"):
        init.touch(exist_ok=True)
    installed = []
    for name in names or sorted(CARDS):
        shipped = PACKAGE_DIR / name
        files = {f.name: f.read_text(encoding="utf-8") for f in sorted(shipped.iterdir()) if f.is_file()}
        if set(files) != set(module_files(name)):
            raise FileNotFoundError(
                f"{shipped}: the packaged evaluate module is incomplete; reinstall neurotrain-hf"
            )
        digest = hashlib.sha256(files[f"{name}.py"].encode() + files["README.md"].encode()).hexdigest()
        folder = root / "metrics" / f"{NAMESPACE}--{name}" / digest
        if not (folder / f"{name}.py").is_file():
            tmp = folder.with_name(f".{digest}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            write_files(tmp, {**files, "__init__.py": ""})
            tmp.replace(folder)
        installed.append(folder)
    return installed


def write_package_modules() -> list[Path]:
    """Regenerate the module folders shipped in the package (a development step, `make spaces`)."""
    return [write_files(PACKAGE_DIR / name, module_files(name)) for name in sorted(CARDS)]


def write_spaces(dest: Path) -> list[Path]:
    """Lay out every metric Space under ``dest/<name>/``."""
    return [write_files(Path(dest) / name, space_files(name)) for name in sorted(CARDS)]


def publish_spaces(
    namespace: str = NAMESPACE,
    token: str | None = None,
    endpoint: str | None = None,
    names: list[str] | None = None,
) -> list[str]:
    """Create or update one Gradio Space per metric on the configured Hub endpoint."""
    import tempfile

    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    urls = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or sorted(CARDS):
            folder = write_files(Path(tmp) / name, space_files(name))
            repo_id = f"{namespace}/{name}"
            api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True)
            api.upload_folder(
                repo_id=repo_id,
                repo_type="space",
                folder_path=str(folder),
                commit_message=f"Update {name} metric",
            )
            urls.append(f"{api.endpoint}/spaces/{repo_id}")
    return urls

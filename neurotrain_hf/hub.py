"""Sharing through the Hub: push a run folder, pull a repo, push a prepared dataset.

Only ``huggingface_hub``/``datasets`` APIs talk to the Hub; endpoint, token and cache come from
``HF_ENDPOINT``, ``HF_TOKEN`` / ``hf auth login`` and ``HF_HOME``. A pushed model repo holds the run's
``model/`` folder at its root (so ``AutoModel*.from_pretrained(repo_id)`` loads it), the adapter under
``adapter/`` for PEFT runs, the run's record under ``neurotrain/`` and a generated model card. Errors are
one line, and never contain the token.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import NeuroTrainError

RECORD_FILES = (  # every run's; a task adds its own (``Task.run_files``)
    "config.toml",
    "report.json",
    "history.csv",
    "history.jsonl",
    "valid_metrics.json",
    "test_metrics.json",
)
PICKLES = ("optimizer.pt", "scheduler.pt", "rng_state", "training_args.bin", "scaler.pt")


def _hub_error(exc: Exception, what: str, token: str | None = None) -> NeuroTrainError:
    """One line for a Hub failure: 401 says how to authenticate, 403 quotes the Hub's reason, a missing repo
    says it may be private; the token (``token``, ``HF_TOKEN`` or the stored login) is never shown."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    kind = type(exc).__name__
    if status == 401 or kind == "LocalTokenNotFoundError":
        line = "the Hub refused the request without a valid token; set HF_TOKEN or run `hf auth login`"
    elif status == 403:
        reason = (getattr(response, "headers", None) or {}).get("X-Error-Message") or "forbidden"
        line = (
            f"the Hub refused to write ({reason.rstrip('.')}): a write token may only create or push repos "
            "under its own user name or an organisation the user belongs to"
        )
    elif kind == "RepositoryNotFoundError":
        line = (
            "repository not found, or private and not visible to this token (a private repo is seen only "
            "with a token of its owner or of a member of its organisation)"
        )
    else:
        text = str(exc).strip()
        line = text.splitlines()[0] if text else kind
    return NeuroTrainError(_without_tokens(f"{what}: {line}", token))


def _without_tokens(text: str, token: str | None = None) -> str:
    """``text`` with the explicit token and the environment's / stored login's token masked."""
    from huggingface_hub import get_token

    for secret in {token, get_token()}:
        if isinstance(secret, str) and secret:
            text = text.replace(secret, "***")
    return text


def optimizer_file(path: Path) -> bool:
    """Training state a published checkpoint leaves out by default: pickles, and the optimizer shards of
    ZeRO (``*_optim_states.pt``) and FSDP (``optimizer_0/``)."""
    return (
        path.name.startswith(PICKLES) or path.name.endswith("_optim_states.pt") or "optimizer_0" in path.parts
    )


def stage_run(
    run_dir: Path,
    dest: Path,
    include_checkpoints: bool = False,
    include_optimizer: bool = False,
    task_files: tuple[str, ...] = (),
) -> list[str]:
    """Lay out the files a run's repo holds under ``dest`` (``task_files``: the task's own record files);
    returns their repo paths (sorted)."""
    model, adapter = run_dir / "model", run_dir / "adapter"
    if not model.is_dir() and not adapter.is_dir():
        raise NeuroTrainError(f"{run_dir}: no model/ or adapter/ folder (is this a finished run folder?)")
    from .trainer.consolidation import shard_set

    if shard_set(model):
        raise NeuroTrainError(
            f"{model}: per-rank {shard_set(model)} shards, not a model one process loads: run "
            f"`neurotrain consolidate {model} --in-place` first"
        )
    if model.is_dir():
        shutil.copytree(model, dest, dirs_exist_ok=True)
    if adapter.is_dir():
        shutil.copytree(adapter, dest / ("adapter" if model.is_dir() else "."), dirs_exist_ok=True)
    record = dest / "neurotrain"
    record.mkdir(parents=True, exist_ok=True)
    for name in (*RECORD_FILES, *task_files):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, record / name)
    for png in run_dir.rglob("*.png"):
        if "checkpoint-" not in str(png.relative_to(run_dir)):
            target = record / "plots" / png.relative_to(run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(png, target)
    if include_checkpoints:
        for ckpt in sorted(run_dir.glob("checkpoint-*")):
            for file in ckpt.rglob("*"):
                if file.is_file() and (include_optimizer or not optimizer_file(file.relative_to(ckpt))):
                    target = dest / "checkpoints" / ckpt.name / file.relative_to(ckpt)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, target)
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    include_checkpoints: bool = False,
    include_optimizer: bool = False,
    license: str = "apache-2.0",
    token: str | None = None,
) -> dict[str, Any]:
    """Create (if needed) and upload the run's repo; returns the commit URL and the pushed file list."""
    import json

    from huggingface_hub import HfApi

    from .model_card import build_card
    from .tasks import get_task

    run_dir = Path(run_dir)
    if not (run_dir / "report.json").is_file():
        raise NeuroTrainError(f"{run_dir}: no report.json (push a finished run folder)")
    task = get_task(json.loads((run_dir / "report.json").read_text(encoding="utf-8"))["task"]).load()
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="neurotrain-push-") as tmp:
        stage = Path(tmp)
        files = stage_run(run_dir, stage, include_checkpoints, include_optimizer, task.run_files)
        build_card(run_dir, repo_id, license).save(stage / "README.md")
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=str(stage),
                revision=revision,
                commit_message=f"neurotrain run {run_dir.name}",
            )
        except Exception as exc:  # noqa: BLE001 - every client failure becomes one line
            raise _hub_error(exc, f"push {run_dir} -> {repo_id}", token) from None
    return {"commit_url": str(getattr(commit, "commit_url", commit)), "files": sorted([*files, "README.md"])}


def pull(repo_id: str, revision: str | None = None, token: str | None = None) -> Path:
    """Snapshot a model repo into the cache (``HF_HOME``); returns the local folder."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, token=token))
    except Exception as exc:  # noqa: BLE001
        raise _hub_error(exc, f"pull {repo_id}" + (f"@{revision}" if revision else ""), token) from None


def push_dataset(config: Any, repo_id: str, private: bool = False, token: str | None = None) -> list[str]:
    """Push the configured dataset's splits (images embedded) with ``DatasetDict.push_to_hub``; loads back
    with ``[dataset] hub_id = repo_id``. Returns the split names."""
    from .data.registry import DATASETS
    from .tasks import get_task

    get_task(config.basic.task).load_sources()
    source = DATASETS.get(config.dataset.name)(config.dataset)
    try:
        source.splits.push_to_hub(repo_id, private=private, token=token)
    except Exception as exc:  # noqa: BLE001
        raise _hub_error(exc, f"dataset push {config.dataset.name} -> {repo_id}", token) from None
    return list(source.splits)


def publish_space(
    folder: str | Path, repo_id: str, model: str, private: bool = False, token: str | None = None
) -> str:
    """Create or update a Gradio Space from ``spaces/<name>/``, serving ``model`` (a Hub model id): the
    card's ``models`` and the app's default ``NEUROTRAIN_MODEL`` are set to it. Returns the commit URL."""
    from huggingface_hub import HfApi, RepoCard

    folder = Path(folder)
    if not (folder / "app.py").is_file() or not (folder / "README.md").is_file():
        raise NeuroTrainError(
            f"{folder}: not a Space folder (needs app.py and README.md with the Space front matter)"
        )
    with tempfile.TemporaryDirectory(prefix="neurotrain-space-") as tmp:
        stage = Path(tmp)
        shutil.copytree(folder, stage, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        card = RepoCard.load(stage / "README.md")
        previous = list(card.data.get("models") or [])
        card.data.models = [model]
        card.save(stage / "README.md")
        app = (stage / "app.py").read_text(encoding="utf-8")
        for old in previous:
            app = app.replace(f'"{old}"', f'"{model}"')
        (stage / "app.py").write_text(app, encoding="utf-8")
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id, repo_type="space", folder_path=str(stage), commit_message=f"serve {model}"
            )
        except Exception as exc:  # noqa: BLE001
            raise _hub_error(exc, f"space publish {folder} -> {repo_id}", token) from None
    return str(getattr(commit, "commit_url", commit))

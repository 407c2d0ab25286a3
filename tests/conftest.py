"""Test setup: offline, deterministic, CPU; helpers to build tiny experiment configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "HF_UPDATE_DOWNLOAD_COUNTS": "0",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "NEUROTRAIN_LOG_LEVEL": "WARNING",
}
os.environ.update(OFFLINE)
# Under pytest-xdist (`make test` runs two workers on two cores) each worker and every process it starts
# (`accelerate launch` ranks included: NEUROTRAIN_CPU_THREADS) computes on one thread: a second torch
# thread beside a busy worker only spin-waits (a launched CLIP recipe ran 5x slower with two).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["NEUROTRAIN_CPU_THREADS"] = "1"
    if "torch" in sys.modules:  # imported by a plugin before this file
        sys.modules["torch"].set_num_threads(1)
# evaluate modules the code installs go to a per-session folder, not the user's cache
if "HF_MODULES_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="neurotrain-modules-")
    atexit.register(shutil.rmtree, os.environ["HF_MODULES_CACHE"], ignore_errors=True)
# synthetic volumes and preprocessed-volume caches go to a per-session folder, not ~/.cache/neurotrain
if "NEUROTRAIN_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["NEUROTRAIN_CACHE"] = tempfile.mkdtemp(prefix="neurotrain-cache-")
    atexit.register(shutil.rmtree, os.environ["NEUROTRAIN_CACHE"], ignore_errors=True)


ROOT = Path(__file__).resolve().parents[1]
# A ViT small enough to build and train in a test (hf/vit from its config, random init, 16 px inputs).
TINY_VIT = {
    "image_size": 16,
    "patch_size": 8,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 37,
}
RECIPES = ROOT / "recipes"


def tiny_config_dict(tmp_path: Path, **sections) -> dict:
    """A fast digits experiment (few samples, 1-2 epochs) writing under ``tmp_path``."""
    base = {
        "basic": {"task": "classification", "run_id": "t", "seed": 0, "output_dir": str(tmp_path / "runs")},
        "model": {"name": "simple_cnn", "kwargs": {"channels": [8, 16], "dropout": 0.0}},
        "dataset": {"name": "digits", "max_samples": 256},
        "training": {
            "num_train_epochs": 2,
            "batch_size": 32,
            "learning_rate": 3e-3,
            "logging_steps": 2,
            "disable_tqdm": True,
            "report_to": "none",
        },
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return base


def make_config(tmp_path: Path, **sections):
    from neurotrain_hf.config import build_config

    return build_config(tiny_config_dict(tmp_path, **sections), source="test.toml")


def write_toml(path: Path, data: dict) -> Path:
    import tomli_w

    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def run_python(args: list[str], timeout: int = 600, env: dict | None = None, cwd: Path | None = None):
    """Run a Python script in a fresh process with the offline environment."""
    full_env = {**os.environ, **OFFLINE, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd or ROOT,
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Tiny trained runs (a few steps) and sample inputs, shared by every test module that needs a model folder.
import pytest  # noqa: E402


def _tiny_run(task: str, tmp_path_factory) -> Path:
    from .helpers.tiny_runs import config, train

    return train(config(task, tmp_path_factory.mktemp(f"tiny_{task}")))


@pytest.fixture(scope="session")
def classification_run(tmp_path_factory) -> Path:
    return _tiny_run("classification", tmp_path_factory)


@pytest.fixture(scope="session")
def segmentation_run(tmp_path_factory) -> Path:
    return _tiny_run("segmentation", tmp_path_factory)


@pytest.fixture(scope="session")
def clip_run(tmp_path_factory) -> Path:
    return _tiny_run("clip", tmp_path_factory)


@pytest.fixture(scope="session")
def detection_run(tmp_path_factory) -> Path:
    return _tiny_run("detection", tmp_path_factory)


@pytest.fixture(scope="session")
def vlm_run(tmp_path_factory) -> Path:
    return _tiny_run("vlm", tmp_path_factory)


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory) -> dict[str, Path]:
    from .helpers.tiny_runs import sample_images

    return sample_images(tmp_path_factory.mktemp("sample_images"))


# --- prerequisites: a test marked `@pytest.mark.requires("chromium")` skips without it (listed at the end
# of the run by `-ra`); under CI=true the run stops at collection with one line naming what is missing.
def _module(name: str):
    from importlib.util import find_spec

    return lambda: find_spec(name) is not None


def _program(*names: str):
    import shutil

    return lambda: any(shutil.which(n) for n in names)


# a session's PostgreSQL server on 127.0.0.1 (tests/pg_server.py): `postgres_url` is a fixture for every test
from .pg_server import pg_bin_dir, postgres_url  # noqa: E402, F401

PREREQUISITES = {  # name: (present?, how .ci/run installs it)
    "chromium": (_program("chromium", "chromium-browser"), "apt-get install -y chromium"),
    "g++": (_program("g++"), "apt-get install -y g++ (DeepSpeed JIT-builds its CPU ops)"),
    "postgresql": (lambda: pg_bin_dir() is not None, "apt-get install -y postgresql"),
    "deepspeed": (_module("deepspeed"), "pip install -e '.[deepspeed]'"),
    "gradio": (_module("gradio"), "pip install -e '.[demo]'"),
    "tensorboard": (_module("tensorboard"), "pip install -e '.[dev]'"),
    "mlflow": (_module("mlflow"), "pip install -e '.[trackers]'"),
    "trackio": (_module("trackio"), "pip install -e '.[trackers]'"),
}


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true")


def _missing(names) -> dict[str, str]:
    return {name: PREREQUISITES[name][1] for name in names if not PREREQUISITES[name][0]()}


def _said(missing: dict[str, str]) -> str:
    return "; ".join(f"{name} (install: {how})" for name, how in missing.items())


def pytest_sessionstart(session) -> None:
    """Under CI=true every prerequisite must be there: checked once, in the process that reports (not in
    the xdist workers, where an exit is an internal error), before any test is collected."""
    if _under_ci() and not hasattr(session.config, "workerinput"):
        missing = _missing(PREREQUISITES)
        if missing:  # one line and exit status 4 (usage error), not pytest's two-line exit banner
            sys.stderr.write(f"CI=true and a prerequisite is missing: {_said(missing)}\n")
            sys.stderr.flush()
            os._exit(4)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "requires(*names): prerequisites (tests/conftest.py PREREQUISITES)")


# The longest files start first: two xdist workers then finish together instead of one waiting on the other.
LONG_FILES = (  # by measured seconds per file in a full run (2 workers), longest first
    "test_resume.py",
    "test_deepspeed.py",
    "test_hub.py",
    "detection/test_detection_runs.py",
    "classification/test_trainer.py",
    "segmentation/test_volume_runs.py",
    "clip/test_clip_runs.py",
    "test_distributed.py",
    "diffusion/test_runs.py",
    "vlm/test_runs.py",
    "test_evaluate_modules.py",
    "tune/test_tune_workers.py",
    "clip/test_clip_deepspeed.py",
    "segmentation/test_segmentation_runs.py",
    "test_multinode.py",
    "test_external_task.py",
    "segmentation/test_segmentation.py",
    "tune/test_tune.py",
    "test_streaming.py",
    "test_sharded_checkpoints.py",
    "test_cli_and_recipe.py",
    "test_trackers.py",
    "diffusion/test_ema.py",
    "test_demos.py",
    "runs/test_index.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    first = {f"tests/{name}": rank for rank, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: first.get(item.nodeid.split("::")[0], len(first)))  # stable within a file
    wanted = {name: [] for item in items for m in item.iter_markers("requires") for name in m.args}
    unknown = set(wanted) - set(PREREQUISITES)
    if unknown:
        raise pytest.UsageError(f"unknown prerequisite(s) {sorted(unknown)}: add them to PREREQUISITES")
    missing = _missing(wanted)
    if missing and _under_ci():  # a worker of a CI run the session check let through: fail, never skip
        raise pytest.UsageError(f"CI=true and a prerequisite is missing: {_said(missing)}")
    for item in items:
        needs = [n for m in item.iter_markers("requires") for n in m.args if n in missing]
        if needs:
            reason = "; ".join(f"missing prerequisite {n} (install: {missing[n]})" for n in needs)
            item.add_marker(pytest.mark.skip(reason=reason))

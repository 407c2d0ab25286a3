"""A task from another package: tests/fixtures/denoise_task is pip-installed into a site folder of its
own (entry point group ``neurotrain_hf.tasks``) and driven through the ``neurotrain`` command and ``recipes/train.py`` in
fresh processes: discovery, its own config keys and metric family, training with an iterative inference,
PSNR checked against scikit-image, prediction from a PNG, a push to the Hub test double. The guide
docs/writing-a-task.md must embed the package verbatim and name exactly the hooks ``Task`` has.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib

from .conftest import OFFLINE, ROOT, write_toml
from .hub_double import client_env, serve

FIXTURE = ROOT / "tests" / "fixtures" / "denoise_task"
GUIDE = ROOT / "docs" / "writing-a-task.md"
BUILT_IN = {"classification", "clip", "detection", "segmentation"}
TOKEN = "hf_test_write"  # a write token the Hub double accepts
PIP_ENV = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # never the network
# Tiny convolutions: on a shared 2-core machine a second torch thread only waits (steps become ~50x slower).
ENV = {**os.environ, **OFFLINE, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

CONFIG = {
    "basic": {"task": "denoising", "run_id": "t", "seed": 0},
    "model": {"name": "denoiser", "kwargs": {"hidden": 32, "depth": 4}},
    "dataset": {"noise_std": 0.3, "max_samples": 320},
    "augmentation": {"horizontal_flip": 0.5},
    "training": {
        "refine_steps": 2,
        "max_steps": 150,
        "batch_size": 32,
        "learning_rate": 5e-3,
        "eval_strategy": "steps",
        "eval_steps": 50,
        "save_strategy": "steps",
        "save_steps": 50,
        "metric_for_best_model": "psnr",
        "logging_steps": 25,
        "report_to": "none",
        "disable_tqdm": True,
    },
}

# The reference: the saved folder through the transformers Auto class, the denoiser applied refine_steps
# times, PSNR and MSE from scikit-image (never the package's metric). The test split's images come from the
# task's data preparation; the PNG for `neurotrain predict` is the first noisy test image.
REFERENCE = """
import json, sys
import numpy as np, torch
from PIL import Image
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio
import neurotrain_hf  # registers every installed task's models with the Auto classes
from neurotrain_hf.config import load_config
from neurotrain_hf.tasks import get_task
from transformers import AutoModelForImageToImage

run, png = sys.argv[1], sys.argv[2]
rows = get_task("denoising").load().prepare_data(load_config(f"{run}/config.toml")).splits["test"]
rows = rows.with_format(None)
noisy = np.asarray(rows["noisy"], dtype=np.float32)
clean = np.asarray(rows["clean"], dtype=np.float64)
model = AutoModelForImageToImage.from_pretrained(f"{run}/model").eval()
steps = model.config.neurotrain_inference["refine_steps"]

def denoise(images, n):
    x = torch.from_numpy(images)[:, None]
    with torch.no_grad():
        for _ in range(n):
            x = model(pixel_values=x).reconstruction
    return x[:, 0].double().numpy()

def mean_psnr(images):
    return float(np.mean([peak_signal_noise_ratio(c, d, data_range=1) for c, d in zip(clean, images)]))

denoised = denoise(noisy, steps)
Image.fromarray(np.round(noisy[0] * 255).astype(np.uint8)).save(png)
grey = np.asarray(Image.open(png), dtype=np.float32) / 255
expected_png = np.round(np.clip(denoise(grey[None], steps)[0], 0, 1) * 255).astype(np.uint8)
print(json.dumps({
    "model_class": type(model).__name__, "steps": steps, "samples": len(clean),
    "psnr": mean_psnr(denoised), "psnr_one_pass": mean_psnr(denoise(noisy, 1)), "psnr_noisy": mean_psnr(noisy),
    "mse": float(np.mean([mean_squared_error(c, d) for c, d in zip(clean, denoised)])),
    "png": expected_png.tolist(),
}))
"""

HUB_PROBE = """
import json
from huggingface_hub import HfApi, ModelCard
card = ModelCard.load("tester/denoise")
print(json.dumps({"files": sorted(HfApi().list_repo_files("tester/denoise")), "card": card.data.to_dict()}))
"""


def python(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env or ENV
    )


def neurotrain(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return python("-m", "neurotrain_hf.cli", *map(str, args), cwd=cwd, env=env)


def in_parallel(**jobs) -> SimpleNamespace:
    """Run independent subprocess jobs (zero-argument callables) two at a time: one per core."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return SimpleNamespace(**{name: future.result() for name, future in futures.items()})


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.args, result.stdout[-2000:], result.stderr[-4000:])
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The fixture package pip-installed (offline, from a copy) into a site folder of its own that the test's
    processes put on PYTHONPATH: found through its entry point like any installed task, while the shared
    venv (and whatever else runs beside this test) never sees it."""
    tmp = tmp_path_factory.mktemp("denoise_site")
    source, site = tmp / "src", tmp / "site"
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=PIP_ENV,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", path)  # client_env() copies os.environ
        patch.setitem(ENV, "PYTHONPATH", path)
        yield site


@pytest.fixture(scope="module")
def hub():
    server = serve(0)
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def runs(installed, hub, tmp_path_factory) -> SimpleNamespace:
    """Everything the tests check, run once: listings and config checks beside the training runs, then
    the reference computation and the push, then prediction and the pushed repo's listing."""
    tmp = tmp_path_factory.mktemp("external")
    config = {**CONFIG, "basic": {**CONFIG["basic"], "output_dir": str(tmp / "runs")}}
    write_toml(tmp / "config.toml", config)
    write_toml(tmp / "spacing.toml", {**config, "dataset": {**config["dataset"], "spacing": [1, 1, 1]}})
    write_toml(tmp / "dice.toml", {**config, "training": {**config["training"], "metrics": ["dice"]}})
    # The generic recipe on a short schedule, with no [model] section: the task's default model.
    recipe = {k: v for k, v in config.items() if k != "model"}
    recipe["basic"] = {**config["basic"], "run_id": "recipe"}
    recipe["training"] = {**config["training"], "max_steps": 10, "eval_steps": 5, "save_steps": 5}
    write_toml(tmp / "recipe.toml", recipe)
    first = in_parallel(
        train=lambda: neurotrain("train", "config.toml", cwd=tmp),
        recipe=lambda: python(str(ROOT / "recipes" / "train.py"), "recipe.toml", cwd=tmp),
        tasks=lambda: neurotrain("list", "tasks", cwd=tmp),
        metrics=lambda: neurotrain("list", "metrics", "--task", "denoising", cwd=tmp),
        spacing=lambda: neurotrain("check", "spacing.toml", cwd=tmp),
        dice=lambda: neurotrain("check", "dice.toml", cwd=tmp),
    )
    run_dir = Path(ok(first.train).stdout.split("run folder: ", 1)[1].splitlines()[0])
    png = tmp / "noisy.png"
    home = tmp / "hub-home"
    second = in_parallel(
        reference=lambda: python("-c", REFERENCE, str(run_dir), str(png), cwd=tmp),
        push=lambda: neurotrain("push", run_dir, "tester/denoise", cwd=tmp, env=client_env(hub, home, TOKEN)),
    )
    expected = json.loads(ok(second.reference).stdout.strip().splitlines()[-1])
    third = in_parallel(
        predict=lambda: neurotrain("predict", run_dir, "noisy.png", "--out", tmp / "out", cwd=tmp),
        repo=lambda: python("-c", HUB_PROBE, cwd=tmp, env=client_env(hub, home)),
    )
    report = json.loads((run_dir / "report.json").read_text())
    return SimpleNamespace(
        **vars(first),
        **vars(second),
        **vars(third),
        tmp=tmp,
        run_dir=run_dir,
        expected=expected,
        report=report,
    )


def test_the_installed_task_is_listed_with_its_own_metrics(runs):
    tasks = ok(runs.tasks).stdout.split()
    assert "denoising" in tasks and set(tasks) >= BUILT_IN
    assert ok(runs.metrics).stdout.split() == ["psnr", "mse"]


def test_training_writes_the_run_folder_and_beats_the_noisy_input(runs):
    lines = ok(runs.train).stdout.strip().splitlines()
    assert f"run folder: {runs.run_dir}" in lines
    assert lines[-1].startswith("test metrics: ")
    headline = json.loads(lines[-1].removeprefix("test metrics: "))
    test = runs.report["test"]
    assert headline["psnr"] == round(test["psnr"], 4) and set(headline) == {"loss", "psnr", "mse"}
    assert runs.report["task"] == "denoising" and runs.report["global_step"] == 150
    assert runs.report["dataset"]["noise_std"] == 0.3 and runs.report["dataset"]["samples"]["train"] == 320
    assert runs.report["best_checkpoint"].endswith(("checkpoint-50", "checkpoint-100", "checkpoint-150"))
    # the denoiser is worth having: well above the PSNR of the noisy images themselves
    assert test["psnr"] > runs.expected["psnr_noisy"] + 1.5, (test["psnr"], runs.expected["psnr_noisy"])
    model = runs.run_dir / "model"
    saved = json.loads((model / "config.json").read_text())
    assert saved["neurotrain_task"] == "denoising" and saved["model_type"] == "neurotrain_denoiser"
    assert saved["neurotrain_inference"] == {"refine_steps": 2}  # the settings, saved once
    assert (model / "model.safetensors").is_file()
    processor = json.loads((model / "preprocessor_config.json").read_text())
    assert processor["num_channels"] == 1 and processor["do_normalize"] is False
    with open(runs.run_dir / "test_per_sample.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == test["num_samples"] == runs.expected["samples"]
    assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    assert sum(float(r["psnr"]) for r in rows) / len(rows) == pytest.approx(test["psnr"], abs=1e-5)


def test_reported_psnr_equals_scikit_image_on_the_refined_outputs(runs):
    ref, test = runs.expected, runs.report["test"]
    assert ref["model_class"] == "Denoiser" and ref["steps"] == 2
    assert test["psnr"] == pytest.approx(ref["psnr"], abs=1e-4)
    assert test["mse"] == pytest.approx(ref["mse"], abs=1e-7)
    # the loop ran: one pass gives a measurably different PSNR, which the report does not match
    assert abs(ref["psnr_one_pass"] - ref["psnr"]) > 1e-2
    assert test["psnr"] != pytest.approx(ref["psnr_one_pass"], abs=1e-4)


def test_the_generic_recipe_trains_the_task_with_its_default_model(runs):
    lines = ok(runs.recipe).stdout.strip().splitlines()
    assert lines[-1].startswith("test metrics: ") and "psnr" in json.loads(lines[-1][len("test metrics: ") :])
    saved = json.loads((runs.tmp / "runs" / "denoising" / "recipe" / "model" / "config.json").read_text())
    assert saved["model_type"] == "neurotrain_denoiser" and saved["neurotrain_task"] == "denoising"


def test_keys_and_metrics_the_task_does_not_have_are_refused_in_one_line(runs):
    for result, words in ((runs.spacing, ("spacing", "denoising")), (runs.dice, ("dice", "psnr"))):
        assert result.returncode == 2, result.stderr[-2000:]
        (line,) = result.stderr.strip().splitlines()
        assert all(word in line for word in words), line
    assert "[dataset] spacing: the denoising task does not read this key" in runs.spacing.stderr
    assert "'dice' is not a denoising metric; valid: psnr, mse" in runs.dice.stderr


def test_predict_writes_the_denoised_png(runs):
    from PIL import Image

    (line,) = ok(runs.predict).stdout.strip().splitlines()
    record = json.loads(line)
    assert record["input"] == "noisy.png" and record["shape"] == [8, 8]
    written = runs.tmp / "out" / "noisy_denoised.png"
    assert record["written"] == [str(written)]
    with Image.open(written) as image:
        assert image.mode == "L" and image.size == (8, 8)
        pixels = [list(image.getdata())[r * 8 : r * 8 + 8] for r in range(8)]
    # the saved refine steps were applied: the same image as the reference's two passes (rounding aside)
    assert max(abs(a - b) for row, exp in zip(pixels, runs.expected["png"]) for a, b in zip(row, exp)) <= 1


def test_push_to_the_hub_double(runs):
    ok(runs.push)
    pushed = json.loads(ok(runs.repo).stdout.strip().splitlines()[-1])
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        "neurotrain/report.json",
    ):
        assert name in pushed["files"], pushed["files"]
    card = pushed["card"]
    assert card["pipeline_tag"] == "image-to-image" and "denoising" in card["tags"]
    metrics = {m["type"]: m["value"] for m in card["model-index"][0]["results"][0]["metrics"]}
    assert metrics["psnr"] == runs.report["test"]["psnr"]


def test_the_guide_embeds_the_package_verbatim_and_names_exactly_the_hooks():
    guide = GUIDE.read_text(encoding="utf-8")
    files = [
        p
        for p in sorted(FIXTURE.rglob("*"))
        if p.is_file() and not any(part.endswith(".egg-info") or part == "__pycache__" for part in p.parts)
    ]
    assert {p.name for p in files} >= {"pyproject.toml", "__init__.py", "task.py", "metrics.py"}
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        assert rel in guide, rel
        text = path.read_text(encoding="utf-8")
        block = f"{rel}\n\n```{'toml' if path.suffix == '.toml' else 'python'}\n{text}```"
        assert block in guide, f"{rel}: not embedded verbatim after its path line"
    # the sample config is the one trained here (less what only the test needs)
    sample = tomllib.loads(guide.rsplit("```toml\n", 1)[1].split("```", 1)[0])
    tested = {**CONFIG, "basic": {**CONFIG["basic"], "output_dir": "runs"}}
    tested["training"] = {k: v for k, v in CONFIG["training"].items() if k != "disable_tqdm"}
    assert sample == tested
    tree = ast.parse((ROOT / "neurotrain_hf" / "tasks" / "base.py").read_text(encoding="utf-8"))
    (task,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Task"]
    hooks = {n.name for n in task.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    section = guide.split("## Hooks", 1)[1].split("\n## ", 1)[0]
    listed = {line.split("`")[1].split("(")[0] for line in section.splitlines() if line.startswith("| `")}
    assert listed == hooks, (sorted(hooks - listed), sorted(listed - hooks))

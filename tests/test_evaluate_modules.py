"""The evaluate modules: same results as the functions, offline loading, shipped files, Spaces, publishing."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from neurotrain_hf.metrics import hub
from neurotrain_hf.metrics.evaluate_modules import MODULES
from neurotrain_hf.metrics.overlap import compute_dice

from .conftest import OFFLINE, ROOT, run_python
from .metric_refs import random_detection_case

LOAD_ALL = """
import json, sys, numpy as np, evaluate
out = {}
for name in %s:
    m = evaluate.load("neurotrain/" + name)
    out[name] = type(m).__name__
m = evaluate.load("neurotrain/dice")
out["dice_value"] = m.compute(predictions=[np.array([[0, 1], [1, 1]])], references=[np.array([[0, 1], [0, 1]])],
                              num_labels=2)["mean_dice"]
print(json.dumps(out))
"""


def load_in_fresh_process(names: list[str], env: dict) -> dict:
    """Run LOAD_ALL for ``names`` in a new Python process; returns its JSON output."""
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_ALL % json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **OFFLINE, **env},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_module_matches_function_and_add_batch():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 3, (6, 6)) for _ in range(4)]
    refs = [rng.integers(0, 3, (6, 6)) for _ in range(4)]
    module = MODULES["dice"]()
    module.add_batch(predictions=preds[:2], references=refs[:2])
    module.add(prediction=preds[2], reference=refs[2])
    out = module.compute(predictions=preds[3:], references=refs[3:], num_labels=3)
    assert out["mean_dice"] == pytest.approx(compute_dice(preds, refs, 3)["mean_dice"])
    p, r = random_detection_case(0, n_img=5)
    assert MODULES["detection_map"]().compute(predictions=p, references=r)["map"] >= 0
    cls = MODULES["classification"]().compute(
        predictions=[[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], references=[1, 0, 0], top_k=[1]
    )
    assert cls["accuracy"] == pytest.approx(2 / 3) and "top_k_accuracy@1" in cls


def test_shipped_module_files_and_spaces_are_in_sync():
    for name in hub.CARDS:
        for file, text in hub.module_files(name).items():
            assert (hub.PACKAGE_DIR / name / file).read_text() == text, f"run `make spaces`: {name}/{file}"
        for file, text in hub.space_files(name).items():
            assert (ROOT / "spaces" / "metrics" / name / file).read_text() == text, (
                f"spaces/metrics/{name}/{file}"
            )
    card = hub.metric_card("dice", space=True)
    assert card.startswith("---\ntitle: Dice") and f"sdk_version: {hub.GRADIO_VERSION}" in card
    for section in ("## Metric Description", "## How to Use", "## Inputs", "## Output Values", "## Citation"):
        assert section in card


def test_install_is_idempotent(tmp_path):
    first = hub.install_modules(cache=tmp_path)
    mtimes = [p.stat().st_mtime_ns for p in first]
    second = hub.install_modules(cache=tmp_path)
    assert first == second and [p.stat().st_mtime_ns for p in second] == mtimes
    assert all(len(p.name) == 64 for p in first)


@pytest.mark.parametrize("offline", [True, False])
def test_evaluate_load_in_a_fresh_process_without_network(tmp_path, offline):
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HOME": str(tmp_path / "home")}
    proc = run_python(["-m", "neurotrain_hf.cli", "metrics", "install"], env=env)
    assert proc.returncode == 0, proc.stderr
    if offline:
        env["HF_EVALUATE_OFFLINE"] = "1"
    else:  # a Hub that refuses connections (closed port on 127.0.0.1)
        env = {**env, "HF_EVALUATE_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    out = load_in_fresh_process(sorted(hub.CARDS), env)
    assert (
        out["dice"] == "Dice"
        and out["detection_map"] == "DetectionMAP"
        and out["dice_value"] == pytest.approx(0.8)
    )


@pytest.mark.slow
def test_publish_to_hub_double_then_load_from_space(tmp_path):
    port_file = tmp_path / "port"
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "hub_double.py"), str(port_file)])
    try:
        for _ in range(100):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port_file.read_text()}"
        env = {
            "HF_ENDPOINT": endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_TOKEN": "hf_secret_test_token",
            "HF_HOME": str(tmp_path / "home"),
            "HF_HUB_OFFLINE": "0",
            "HF_EVALUATE_OFFLINE": "0",
            "HF_MODULES_CACHE": str(tmp_path / "modules"),
        }
        proc = run_python(
            ["-m", "neurotrain_hf.cli", "metrics", "publish", "--namespace", "neurotrain"], env=env
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"{endpoint}/spaces/neurotrain/dice" in proc.stdout
        assert "hf_secret_test_token" not in proc.stdout + proc.stderr
        again = run_python(
            ["-m", "neurotrain_hf.cli", "metrics", "publish", "--namespace", "neurotrain"], env=env
        )
        assert again.returncode == 0, again.stderr[-3000:]  # updating existing Spaces works
        # a fresh process with an empty module cache downloads the module script from the Space
        assert load_in_fresh_process(["dice", "bleu"], env)["dice_value"] == pytest.approx(0.8)
        cached = list((tmp_path / "modules").rglob("dice.py"))
        assert cached and "neurotrain--dice" in str(cached[0])
    finally:
        server.terminate()
        server.wait(10)

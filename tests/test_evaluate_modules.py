"""The evaluate modules: each loaded one equals an independent reference, offline loading, shipped files,
Spaces, publishing."""

import json
import os
import subprocess
import sys
import time
from functools import partial

import numpy as np
import pytest

from neurotrain_hf.metrics import hub
from neurotrain_hf.metrics.evaluate_modules import MODULES

from .conftest import OFFLINE, ROOT, run_python
from .metric_refs import (
    COCO_KEYS,
    blob_pair,
    boxes_to_masks,
    hand_bleu,
    hand_f1,
    hand_retrieval,
    hand_threshold_rows,
    monai_nsd,
    monai_overlap,
    pycocotools_stats,
    random_detection_case,
    random_features,
    sklearn_classification,
    torchmetrics_fid,
    torchmetrics_kid,
)

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


WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "home", "fast", "slowly"]


def _dice_iou(kind: str, seed: int):
    shape = ((24, 20), (18, 26), (6, 10, 12))[seed]
    pairs = [blob_pair(shape, 4, 10 * seed + i) for i in range(5)]
    preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
    refs[1][refs[1] == 3] = 0  # class 3 absent from one reference: left out there (ignore_empty)
    return preds, refs, [({"num_labels": 4}, monai_overlap(kind, preds, refs, 4))]


def _nsd(seed: int):
    spacing = ((1.0, 1.0), (0.7, 1.3), (2.0, 0.5))[seed]
    pairs = [blob_pair((30, 34), 3, 10 * seed + i, noise=0.6) for i in range(4)]
    preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
    kwargs = {"num_labels": 3, "tolerance": 1.5, "spacing": spacing}
    return preds, refs, [(kwargs, monai_nsd(preds, refs, 3, 1.5, spacing))]


def _detection(seed: int):
    preds, refs = random_detection_case(seed)
    expected = {k: v for k, v in pycocotools_stats(preds, refs).items() if k in COCO_KEYS}
    expected.update(f1_50=hand_f1(preds, refs, 0.5), f1_75=hand_f1(preds, refs, 0.75))
    return preds, refs, [({}, expected)]


def _segmentation_map(seed: int):
    preds, refs = random_detection_case(seed, n_img=5)
    preds, refs = boxes_to_masks(preds), boxes_to_masks(refs)
    expected = {k: v for k, v in pycocotools_stats(preds, refs, iou_type="segm").items() if k in COCO_KEYS}
    return preds, refs, [({}, expected)]


def _clip_retrieval(seed: int):
    rng = np.random.default_rng(seed)
    sims = np.round(rng.normal(size=(14, 9)), 1)  # one decimal: many ties
    owner = rng.integers(0, 8, 14)  # image 8 has no caption
    k_values = (1, 3, 5)
    return list(sims), owner.tolist(), [({"k_values": k_values}, hand_retrieval(sims, owner, k_values))]


def _bleu(seed: int):
    rng = np.random.default_rng(seed)
    preds, refs = [], []
    for _ in range(12):
        ref_list = [" ".join(rng.choice(WORDS, rng.integers(4, 12))) for _ in range(rng.integers(1, 4))]
        words = ref_list[0].split()
        words = [w if rng.random() < 0.75 else str(rng.choice(WORDS)) for w in words if rng.random() < 0.85]
        preds.append(" ".join(words or ["the"]))
        refs.append(ref_list)
    return preds, refs, [({}, hand_bleu(preds, refs))]


def _classification(seed: int):
    rng = np.random.default_rng(seed)
    probs = rng.multinomial(10, rng.dirichlet(np.ones(4)), size=40) / 10  # tenths: ties in the ranking
    refs = np.r_[np.arange(4), rng.integers(0, 4, 36)]
    top_k = [1, 2, 3]
    variants = [
        ({"average": avg, "top_k": top_k}, sklearn_classification(probs, refs, avg, top_k))
        for avg in ("macro", "weighted", "micro")
    ]
    return list(probs), refs.tolist(), variants


def _threshold(seed: int):
    rng = np.random.default_rng(seed)
    probs = np.round(rng.random(150), 2)  # hundredths: scores equal to thresholds
    refs = (rng.random(150) < probs).astype(int)
    rows = hand_threshold_rows(probs, refs, [k / 100 for k in range(101)])

    def first_best(metric):
        return max(rows, key=lambda row: row[metric])  # max() keeps the first of equal values

    at_recall = [row for row in rows if row["recall"] >= 0.8]
    variants = [
        ({"mode": "best"}, first_best("f1")),
        ({"mode": "best", "metric": "precision"}, first_best("precision")),
        ({"mode": "at_accuracy_threshold"}, first_best("accuracy")),
        ({"mode": "at_recall_threshold", "recall": 0.8}, at_recall[-1]),
        ({"mode": "at_threshold", "threshold": 0.37}, rows[37]),
    ]
    return list(probs.reshape(15, 10)), list(refs.reshape(15, 10)), variants


def _fid(seed: int):
    gen, real = random_features(seed, n_gen=40 + 10 * seed, n_real=50)
    expected = {"fid": torchmetrics_fid(gen, real), "fid_samples": len(gen)}
    return list(gen), list(real), [({}, expected)]


def _kid(seed: int):
    gen, real = random_features(seed, n_gen=30, n_real=30)
    mean, std = torchmetrics_kid(gen, real)  # one subset of every sample: no sampling to match
    return list(gen), list(real), [({"subsets": 1, "subset_size": 30}, {"kid": mean, "kid_std": std})]


REFERENCES = {
    "dice": partial(_dice_iou, "dice"),
    "iou": partial(_dice_iou, "iou"),
    "nsd": _nsd,
    "detection_map": _detection,
    "segmentation_map": _segmentation_map,
    "clip_retrieval": _clip_retrieval,
    "bleu": _bleu,
    "classification": _classification,
    "threshold": _threshold,
    "fid": _fid,
    "kid": _kid,
}
"""name -> seed -> (predictions, references, [(compute kwargs, expected outputs)]), from references
independent of neurotrain_hf (MONAI, pycocotools, scikit-learn, torchmetrics, hand-written loops)."""


@pytest.fixture(scope="module")
def loaded() -> dict:
    """Every shipped module through ``evaluate.load("neurotrain/<name>")``, offline, after install."""
    import evaluate

    hub.install_modules()  # into this session's HF_MODULES_CACHE (tests/conftest.py)
    return {name: evaluate.load(f"neurotrain/{name}") for name in MODULES}


def test_every_module_has_a_reference():
    assert sorted(REFERENCES) == sorted(MODULES) == sorted(hub.CARDS)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_loaded_module_equals_independent_reference(loaded, name, seed):
    """add_batch + add + compute on a random case equals the reference, output by output."""
    module = loaded[name]
    assert type(module).__name__ == MODULES[name].__name__
    preds, refs, variants = REFERENCES[name](seed)
    for kwargs, expected in variants:
        module.add_batch(predictions=preds[:2], references=refs[:2])
        module.add(prediction=preds[2], reference=refs[2])
        out = module.compute(predictions=preds[3:], references=refs[3:], **kwargs)
        for key, value in expected.items():
            assert key in out, f"{name} {kwargs}: no {key}"
            np.testing.assert_allclose(out[key], value, rtol=0, atol=1e-6, equal_nan=True, err_msg=key)


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

"""Sharing a run through the Hub (the test double on 127.0.0.1, real clients): push, load by repo id in a fresh
cache with identical outputs, the model card, predict from a repo id, dataset push, errors without a token,
and no token in any file written or line printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurotrain_hf.config import build_config
from neurotrain_hf.runner import run

from .conftest import tiny_config_dict, write_toml
from .hub_double import client_env, serve

TOKEN = "hf_test_write"


@pytest.fixture(scope="module")
def hub():
    server = serve(0)
    yield server
    server.shutdown()


def cli(hub, home, *args, token=TOKEN, code=None):
    """`neurotrain ...` (or `python -c code`) in a fresh process talking to the double."""
    command = ["-c", code] if code else ["-m", "neurotrain_hf.cli", *args]
    return subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        timeout=300,
        env=client_env(hub, home, token),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    run(build_config(tiny_config_dict(tmp, training={"num_train_epochs": 1})))
    return tmp / "runs" / "classification" / "t"


SECRET = "hf_secret_test_token"  # a write token the double accepts; searched for in everything written


@pytest.fixture(scope="module")
def pushed(hub, trained, tmp_path_factory):
    """The trained run pushed once as tester/digits-cnn (shared by the tests below)."""
    push = cli(
        hub, tmp_path_factory.mktemp("push") / "home", "push", str(trained), "tester/digits-cnn", token=SECRET
    )
    assert push.returncode == 0, push.stderr[-3000:]
    return push


def test_push_then_load_by_repo_id_in_a_fresh_cache(hub, trained, pushed, tmp_path):
    assert pushed.stdout.startswith("pushed ")
    probe = """
import json, torch
import neurotrain_hf
from transformers import AutoModelForImageClassification
from huggingface_hub import HfApi, ModelCard
model = AutoModelForImageClassification.from_pretrained("tester/digits-cnn").eval()
x = torch.linspace(0, 1, 2 * 64).reshape(2, 1, 8, 8)
files = sorted(HfApi().list_repo_files("tester/digits-cnn"))
card = ModelCard.load("tester/digits-cnn")
print(json.dumps({"logits": model(pixel_values=x).logits.tolist(), "files": files,
                  "card": card.data.to_dict(), "text": card.text}))
"""
    fresh = cli(hub, tmp_path / "home2", code=probe, token=None)  # another cache, no token: a public repo
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    out = json.loads(fresh.stdout.strip().splitlines()[-1])
    from transformers import AutoModelForImageClassification

    local = AutoModelForImageClassification.from_pretrained(trained / "model").eval()
    with torch.no_grad():
        expected = local(pixel_values=torch.linspace(0, 1, 2 * 64).reshape(2, 1, 8, 8)).logits
    assert torch.equal(torch.tensor(out["logits"]), expected)  # identical outputs from the repo
    files = out["files"]
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
        assert name in files
    for name in ("config.toml", "report.json", "history.csv", "plots/training_curves.png"):
        assert f"neurotrain/{name}" in files
    assert not any(f.endswith((".pt", ".bin", ".pth")) for f in files)  # no pickles unless asked
    report = json.loads((trained / "report.json").read_text())
    index = out["card"]["model-index"][0]["results"][0]
    measured = {m["type"]: m["value"] for m in index["metrics"]}
    assert measured["accuracy"] == report["test"]["accuracy"] and index["dataset"]["split"] == "test"
    assert {"neurotrain", "classification"} <= set(out["card"]["tags"]) and out["card"][
        "license"
    ] == "apache-2.0"
    assert 'from_pretrained("tester/digits-cnn")' in out["text"]


def test_predict_from_a_repo_id_and_pull(hub, trained, pushed, tmp_path):
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.fromarray((torch.rand(8, 8) * 255).to(torch.uint8).numpy()).save(image)
    predicted = cli(hub, tmp_path / "fresh", "predict", "tester/digits-cnn", str(image), token=None)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    remote = json.loads(predicted.stdout.strip().splitlines()[-1])
    from neurotrain_hf.predictor import Predictor

    assert remote["label"] == Predictor.from_pretrained(trained)(str(image))["label"]
    pulled = cli(hub, tmp_path / "fresh", "pull", "tester/digits-cnn", token=None)
    assert pulled.returncode == 0 and (tmp_path / "fresh") in [p for p in Path(pulled.stdout.strip()).parents]


def test_push_to_a_branch_and_a_wrong_revision(hub, trained, tmp_path):
    assert (
        cli(hub, tmp_path / "h", "push", str(trained), "tester/branchy", "--revision", "dev").returncode == 0
    )
    ok = cli(hub, tmp_path / "c", "pull", "tester/branchy", "--revision", "dev", token=None)
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = cli(hub, tmp_path / "c", "pull", "tester/branchy", "--revision", "nope", token=None)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "nope" in bad.stderr


def test_push_without_a_token_fails_in_one_line_and_no_token_leaks(hub, trained, pushed, tmp_path):
    refused = cli(hub, tmp_path / "h", "push", str(trained), "tester/no-token", token=None)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert "HF_TOKEN" in refused.stderr and "hf auth login" in refused.stderr
    # the pushed run: the token is nowhere in what was written or printed
    assert SECRET not in pushed.stdout + pushed.stderr
    for file in trained.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file
    snapshot = cli(hub, tmp_path / "h3", "pull", "tester/digits-cnn", token=None)
    for file in Path(snapshot.stdout.strip()).rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file


def test_dataset_push_then_load_back_by_hub_id(hub, tmp_path):
    cfg = write_toml(
        tmp_path / "data.toml", {"basic": {"task": "segmentation"}, "dataset": {"name": "synthetic_retina"}}
    )
    pushed = cli(hub, tmp_path / "h", "dataset", "push", str(cfg), "tester/retina")
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    code = """
import json, datasets
from neurotrain_hf.data.registry import DATASETS
from neurotrain_hf.config import build_config
import neurotrain_hf.tasks.segmentation.data  # registers its datasets
loaded = datasets.load_dataset("tester/retina")
cfg = build_config({"basic": {"task": "segmentation"}, "dataset": {"name": "synthetic_retina"}}).dataset
local = DATASETS.get("synthetic_retina")(cfg).splits
print(json.dumps({s: [len(loaded[s]), len(local[s]), loaded[s].column_names] for s in local}))
"""
    out = cli(hub, tmp_path / "fresh", code=code, token=None)
    assert out.returncode == 0, out.stderr[-3000:]
    sizes = json.loads(out.stdout.strip().splitlines()[-1])
    assert sizes and all(n_remote == n_local for n_remote, n_local, _ in sizes.values())


def test_space_publish_sets_the_model_and_passes_the_front_matter_checks(hub, tmp_path):
    folder = Path(__file__).resolve().parents[1] / "spaces" / "segmentation-demo"
    out = cli(
        hub, tmp_path / "h", "space", "publish", str(folder), "tester/seg-demo", "--model", "tester/vessels"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    code = """
import json
from huggingface_hub import HfApi, hf_hub_download, RepoCard
files = sorted(HfApi().list_repo_files("tester/seg-demo", repo_type="space"))
card = RepoCard.load("tester/seg-demo", repo_type="space")
app = open(hf_hub_download("tester/seg-demo", "app.py", repo_type="space")).read()
print(json.dumps({"files": files, "models": card.data.models, "sdk": card.data.sdk, "app": app}))
"""
    got = cli(hub, tmp_path / "fresh", code=code, token=None)
    assert got.returncode == 0, got.stderr[-3000:]
    space = json.loads(got.stdout.strip().splitlines()[-1])
    assert {"app.py", "README.md", "requirements.txt"} <= set(space["files"])
    assert any(f.startswith("examples/") and f.endswith(".png") for f in space["files"])
    assert space["models"] == ["tester/vessels"] and space["sdk"] == "gradio"
    assert '"tester/vessels"' in space["app"]


def test_clip_run_pushes_itself_when_training_ends_and_loads_with_clip_classes(hub, tmp_path):
    from .clip.test_clip_runs import short_clip

    data = short_clip(tmp_path, run_id="pushed")
    data["dataset"]["max_samples"] = 200
    data["training"].update(max_steps=3, eval_strategy="no", save_strategy="no")
    data["hub"] = {"repo_id": "tester/shapes-clip", "push_to_hub": True}
    cfg = write_toml(tmp_path / "clip.toml", data)
    trained = cli(hub, tmp_path / "h", "train", str(cfg))
    assert trained.returncode == 0, trained.stderr[-3000:]
    report = json.loads((tmp_path / "runs" / "clip" / "pushed" / "report.json").read_text())
    assert report["hub"]["repo_id"] == "tester/shapes-clip"
    code = """
import json, torch
from transformers import CLIPModel, CLIPProcessor
model = CLIPModel.from_pretrained("tester/shapes-clip").eval()
processor = CLIPProcessor.from_pretrained("tester/shapes-clip")
inputs = processor(text=["a small red circle at the top left"], padding="max_length", max_length=32, return_tensors="pt")
print(json.dumps(model.get_text_features(**inputs).pooler_output[0].tolist()))
"""
    got = cli(hub, tmp_path / "fresh", code=code, token=None)
    assert got.returncode == 0, got.stderr[-3000:]
    from transformers import CLIPModel, CLIPProcessor

    folder = tmp_path / "runs" / "clip" / "pushed" / "model"
    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
    inputs = processor(
        text=["a small red circle at the top left"], padding="max_length", max_length=32, return_tensors="pt"
    )
    with torch.no_grad():
        local = model.get_text_features(**inputs).pooler_output[0]
    assert torch.equal(torch.tensor(json.loads(got.stdout.strip().splitlines()[-1])), local)


def test_segmentation_push_card_states_the_protocol_and_loads_by_repo_id(hub, tmp_path):
    from .segmentation.test_segmentation_runs import seg_dict

    data = seg_dict(tmp_path, "share", num_train_epochs=1)
    run(build_config(data))
    run_dir = tmp_path / "runs" / "segmentation" / "share"
    pushed = cli(hub, tmp_path / "h", "push", str(run_dir), "tester/vessels")
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    code = """
import json, torch
import neurotrain_hf
from transformers import AutoModelForSemanticSegmentation
from huggingface_hub import ModelCard
model = AutoModelForSemanticSegmentation.from_pretrained("tester/vessels").eval()
card = ModelCard.load("tester/vessels")
x = torch.linspace(-1, 1, 3 * 48 * 48).reshape(1, 3, 48, 48)
print(json.dumps({"logits": model(pixel_values=x).logits.tolist(), "tags": card.data.tags, "text": card.text}))
"""
    got = cli(hub, tmp_path / "fresh", code=code, token=None)
    assert got.returncode == 0, got.stderr[-3000:]
    out = json.loads(got.stdout.strip().splitlines()[-1])
    from transformers import AutoModelForSemanticSegmentation

    local = AutoModelForSemanticSegmentation.from_pretrained(run_dir / "model").eval()
    with torch.no_grad():
        expected = local(pixel_values=torch.linspace(-1, 1, 3 * 48 * 48).reshape(1, 3, 48, 48)).logits
    assert torch.equal(torch.tensor(out["logits"]), expected)
    assert "medical" in out["tags"] and "not for clinical use" in out["text"]
    assert "Dice over the pixels inside the FOV mask, threshold 0.5" in out["text"]

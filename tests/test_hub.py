"""Sharing a run through the Hub (the test double on 127.0.0.1, real clients): push, load by repo id in a fresh
cache with identical outputs, the model card, predict from a repo id, dataset push, errors without a token,
namespaces and private repos, checkpoints/optimizer state only when asked, a LoRA adapter that reloads from
the repo, and no token in any file written or line printed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.request
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
    """`neurotrain ...` (or `python -c code ...`) in a fresh process talking to the double."""
    command = ["-c", code, *args] if code else ["-m", "neurotrain_hf.cli", *args]
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
OTHER = "hf_other_write"  # the write token of another user, "other" (member of org "other-org")


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
    assert not any(f.startswith("checkpoints/") for f in files) and list(trained.glob("checkpoint-*"))
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


MANY = """
import contextlib, io, json, logging, os, sys
from neurotrain_hf.cli import main
logging.basicConfig(level="INFO")  # logs go to the process stderr, not to one command's capture
out = {}
for name, (token, argv) in json.loads(sys.argv[1]).items():
    os.environ.pop("HF_TOKEN", None)
    if token:
        os.environ["HF_TOKEN"] = token
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        rc = main(argv)  # an exception escaping main fails the process with its traceback
    out[name] = [rc, std.getvalue(), err.getvalue()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A LoRA classification run of two steps (adapter/, merged model/, base_model/)."""
    from .helpers import tiny_runs

    data = tiny_runs.config("classification", tmp_path_factory.mktemp("lora"))
    data["basic"]["run_id"] = "lora"
    data["dataset"]["max_samples"] = 64
    data["training"].update(max_steps=2, learning_rate=5e-2)
    data["peft"] = {"r": 4, "alpha": 8, "target_modules": ["net.0", "net.4"], "modules_to_save": ["net.10"]}
    return tiny_runs.train(data)


@pytest.fixture(scope="module")
def commands(hub, trained, pushed, lora_run, tmp_path_factory):
    """The pushes and pulls of the tests below as `neurotrain` commands (cli.main), in order, in ONE fresh
    process (a process pays ~6 s of CPU for its imports): name -> (returncode, stdout, stderr)."""
    request = urllib.request.Request(  # "other" creates other/theirs (public) with its own token
        f"http://127.0.0.1:{hub.server_address[1]}/api/repos/create",
        data=b'{"name": "theirs"}',
        method="POST",
        headers={"authorization": f"Bearer {OTHER}"},
    )
    urllib.request.urlopen(request).read()
    theirs = hub.store.repos["models/other/theirs"]
    before = (dict(theirs.branches), set(theirs.commits))
    private = "tester/private-run"
    calls = {
        # namespaces: tester's token (SECRET) outside tester / org neurotrain, then inside its org
        "their_repo": (SECRET, ["push", trained, "other/theirs"]),  # an existing repo of another user
        "their_user": (SECRET, ["push", trained, "other/new"]),
        "their_org": (SECRET, ["push", trained, "other-org/new"]),
        "own_org": (SECRET, ["push", trained, "neurotrain/team-run"]),
        # a private repo: only its owner (any of tester's tokens) sees it
        "private": (SECRET, ["push", trained, private, "--private"]),
        "private_other": (OTHER, ["pull", private]),
        "private_anonymous": (None, ["pull", private]),
        "private_owner": (TOKEN, ["pull", private]),
        # checkpoints and optimizer state
        "ckpt": (TOKEN, ["push", trained, "tester/ckpt", "--include-checkpoints"]),
        "ckpt_opt": (
            TOKEN,
            ["push", trained, "tester/ckpt-opt", "--include-checkpoints", "--include-optimizer"],
        ),
        "opt_only": (TOKEN, ["push", trained, "tester/opt-only", "--include-optimizer"]),
        # a LoRA run
        "lora": (TOKEN, ["push", lora_run, "tester/digits-lora"]),
        "lora_pull": (None, ["pull", "tester/digits-lora"]),
    }
    calls = {name: [token, [str(a) for a in argv]] for name, (token, argv) in calls.items()}
    proc = cli(hub, tmp_path_factory.mktemp("many") / "home", json.dumps(calls), code=MANY, token=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert SECRET not in proc.stdout + proc.stderr and OTHER not in proc.stdout + proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    return {"before_theirs": before, "log": proc.stderr, **{k: tuple(v) for k, v in out.items()}}


def head(hub, repo_id):
    """The files (path -> bytes) at the head of main of a model repo in the double."""
    repo = hub.store.repos[f"models/{repo_id}"]
    return {path: data for path, (data, _) in repo.commits[repo.branches["main"]].items()}


def one_error_line(result) -> str:
    """A refused command: exit code 2, nothing on stdout, one line on stderr (returned)."""
    rc, out, err = result
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, result
    return err.strip()


def test_push_outside_the_tokens_namespaces_stops_in_one_line_and_writes_nothing(hub, trained, commands):
    line = one_error_line(commands["their_repo"])  # create: 403, exists -> upload: 403
    assert line.startswith(f"error: push {trained} -> other/theirs: the Hub refused to write (")
    assert 'write to the model other/theirs under the namespace "other"' in line
    theirs = hub.store.repos["models/other/theirs"]
    assert (dict(theirs.branches), set(theirs.commits)) == commands["before_theirs"]
    for name, namespace in (("their_user", "other"), ("their_org", "other-org")):
        line = one_error_line(commands[name])
        assert f'create a model under the namespace "{namespace}"' in line and "token may only" in line
    assert not {"models/other/new", "models/other-org/new"} & set(hub.store.repos)
    foreign = [r for r in hub.store.requests if r[0] != "GET" and "/other" in r[1]]  # other/*, other-org/*
    assert ("POST", "/api/models/other/theirs/preupload/main", 403) in foreign  # stopped before any upload
    assert [r for r in foreign if r[2] != 403] == [] and not any(".git/info/lfs" in r[1] for r in foreign)
    stored = {  # no LFS object uploaded outside a commit (a refused push that got as far as uploading)
        hashlib.sha256(data).hexdigest()
        for repo in hub.store.repos.values()
        for files in repo.commits.values()
        for data, lfs in files.values()
        if lfs
    }
    assert set(hub.store.lfs) == stored
    assert commands["own_org"][0] == 0 and commands["own_org"][1].startswith("pushed ")
    assert (
        head(hub, "neurotrain/team-run")["model.safetensors"]
        == (trained / "model/model.safetensors").read_bytes()
    )


def test_a_private_push_is_seen_only_by_its_owner(hub, trained, commands):
    assert commands["private"][0] == 0 and hub.store.repos["models/tester/private-run"].private is True
    for name in ("private_other", "private_anonymous"):
        line = one_error_line(commands[name])
        assert line == (
            "error: pull tester/private-run: repository not found, or private and not visible to this token "
            "(a private repo is seen only with a token of its owner or of a member of its organisation)"
        )
    rc, out, err = commands["private_owner"]
    assert rc == 0, err
    pulled = Path(out.strip())
    assert (pulled / "model.safetensors").read_bytes() == (trained / "model/model.safetensors").read_bytes()


def test_checkpoints_only_with_their_flag_and_optimizer_state_only_with_both(hub, trained, commands):
    pickles = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"}  # the Trainer's pickles
    local = {
        f"checkpoints/{f.relative_to(trained).as_posix()}": f.read_bytes()
        for f in trained.glob("checkpoint-*/**/*")
        if f.is_file()
    }
    assert pickles | {"model.safetensors", "trainer_state.json"} <= {p.rsplit("/", 1)[1] for p in local}
    weights_only = {p: d for p, d in local.items() if p.rsplit("/", 1)[1] not in pickles}
    assert [commands[name][0] for name in ("ckpt", "ckpt_opt", "opt_only")] == [0, 0, 0]

    def checkpoints(repo_id):
        return {p: d for p, d in head(hub, repo_id).items() if p.startswith("checkpoints/")}

    assert checkpoints("tester/digits-cnn") == {}  # the default push (fixture `pushed`)
    assert checkpoints("tester/ckpt") == weights_only
    assert checkpoints("tester/ckpt-opt") == local
    assert checkpoints("tester/opt-only") == {}  # the optimizer flag alone adds nothing


def test_a_lora_runs_adapter_reloads_from_the_pulled_repo_with_identical_outputs(lora_run, commands):
    from peft import PeftModel
    from transformers import AutoModelForImageClassification

    assert commands["lora"][0] == 0 and commands["lora_pull"][0] == 0, commands["lora"]
    pulled = Path(commands["lora_pull"][1].strip())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (pulled / "adapter" / name).read_bytes() == (lora_run / "adapter" / name).read_bytes()

    def base():
        return AutoModelForImageClassification.from_pretrained(lora_run / "base_model").eval()

    remote = PeftModel.from_pretrained(base(), pulled / "adapter").eval()
    local = PeftModel.from_pretrained(base(), lora_run / "adapter").eval()
    merged = AutoModelForImageClassification.from_pretrained(pulled).eval()  # the repo root
    x = torch.linspace(0, 1, 4 * 64).reshape(4, 1, 8, 8)
    with torch.no_grad():
        got, expected = remote(pixel_values=x).logits, local(pixel_values=x).logits
        untrained = base()(pixel_values=x).logits
        assert torch.equal(got, expected)
        assert torch.allclose(merged(pixel_values=x).logits, expected, atol=1e-5)
    assert (expected - untrained).abs().max() > 1e-3  # the adapter changes the outputs


def test_hub_error_lines_never_show_a_token(monkeypatch):
    """Whatever a client error says, the line keeps the explicit token and HF_TOKEN's value out."""
    from types import SimpleNamespace

    from neurotrain_hf.hub import _hub_error

    monkeypatch.setenv("HF_TOKEN", SECRET)
    echo = Exception(f"Bad token {SECRET} / {OTHER}\nsecond line")  # a client message that echoes tokens
    assert str(_hub_error(echo, "pull a/b", token=OTHER)) == "pull a/b: Bad token *** / ***"
    refused = Exception("403")
    refused.response = SimpleNamespace(status_code=403, headers={"X-Error-Message": f"not yours {SECRET}."})
    line = str(_hub_error(refused, "push r -> other/x"))
    assert (
        line.startswith("push r -> other/x: the Hub refused to write (not yours ***): ")
        and SECRET not in line
    )

"""The Hub test double, exercised through the real clients (huggingface_hub, transformers, datasets).

The double runs in this process on 127.0.0.1; each client runs in a fresh subprocess because HF_ENDPOINT is
read at import time. Every script prints one JSON line that the test checks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from .hub_double import client_env, front_matter_errors, serve

WRITE, READ = "hf_test_write", "hf_test_read"


@pytest.fixture(scope="module")
def hub():
    server = serve(0)
    yield server
    server.shutdown()


def run_client(hub, tmp_path, script: str, token: str | None = WRITE, timeout: int = 120) -> dict:
    env = client_env(hub, tmp_path / "home", token)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_auth_namespaces_and_private_repos(hub, tmp_path):
    out = run_client(
        hub,
        tmp_path,
        """
        import json
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError
        out = {}
        for name, token in [("none", False), ("read", "hf_test_read"), ("bad", "hf_nope")]:
            try:
                HfApi(token=token).create_repo("tester/auth-" + name)
            except HfHubHTTPError as e:
                out[name] = [e.response.status_code, str(e)]
        api = HfApi(token="hf_test_write")
        api.create_repo("tester/secret", private=True)
        api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="tester/secret")
        try:
            HfApi(token="hf_test_read").upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="tester/secret")
        except HfHubHTTPError as e:
            out["read_upload"] = e.response.status_code
        out["private_anon"] = HfApi(token=False).repo_exists("tester/secret")
        out["private_read"] = HfApi(token="hf_test_read").repo_exists("tester/secret")
        out["whoami"] = api.whoami()["name"]
        # namespaces: "other" (hf_other_write, org other-org) vs tester (orgs neurotrain)
        other = HfApi(token="hf_other_write")
        out["orgs"] = [[o["name"] for o in a.whoami()["orgs"]] for a in (api, other)]
        out["own"] = str(other.create_repo("mine", private=True))  # organization null -> the token's user
        other.create_repo("other-org/shared")
        api.create_repo("neurotrain/team")
        for name, call in [
            ("user", lambda: api.create_repo("other/x")),
            ("org", lambda: api.create_repo("other-org/x", exist_ok=True)),
            ("write", lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="other-org/shared")),
            ("branch", lambda: api.create_branch("other-org/shared", branch="b")),
            ("delete", lambda: api.delete_repo("other-org/shared")),
            ("private_write", lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="other/mine")),
        ]:
            try:
                call()
                out[name] = "accepted"
            except HfHubHTTPError as e:
                out[name] = [e.response.status_code, e.response.headers.get("X-Error-Message"), type(e).__name__]
        out["other_private"] = [api.repo_exists("other/mine"), other.repo_exists("other/mine")]
        out["secret_other"] = other.repo_exists("tester/secret")
        print(json.dumps(out))
        """,
        token=None,
    )
    assert out["orgs"] == [["neurotrain"], ["other-org"]]
    assert out["own"].endswith("/other/mine")
    for name, namespace, verb in [("user", "other", "create"), ("org", "other-org", "create")]:
        assert out[name][:2] == [
            403,
            f'You don\'t have the rights to {verb} a model under the namespace "{namespace}"',
        ]
    for name in ("write", "branch"):
        assert out[name][0] == 403 and 'under the namespace "other-org"' in out[name][1], name
    assert out["delete"][0] == 403 and "delete a model" in out["delete"][1]
    assert out["private_write"] == [404, "Repository not found", "RepositoryNotFoundError"]
    assert out["other_private"] == [False, True] and out["secret_other"] is False
    assert {"models/other/mine", "models/other-org/shared", "models/neurotrain/team"} <= set(hub.store.repos)
    shared = hub.store.repos["models/other-org/shared"]
    assert list(shared.branches) == ["main"] and len(shared.commits) == 1  # nothing written by tester
    assert not {"models/other/x", "models/other-org/x"} & set(hub.store.repos)
    assert out["none"][0] == 401 and "authenticated" in out["none"][1] and "HF_TOKEN" in out["none"][1]
    assert out["read"][0] == 403 and "read-only token" in out["read"][1]
    assert out["bad"][0] == 401 and "Invalid credentials" in out["bad"][1]
    assert out["read_upload"] == 403
    assert out["private_anon"] is False and out["private_read"] is True and out["whoami"] == "tester"
    assert {WRITE, READ, "hf_nope"} <= hub.store.seen_tokens
    assert "models/tester/auth-none" not in hub.store.repos


def test_upload_folder_lfs_and_regular_snapshot_revisions_and_errors(hub, tmp_path):
    weights = bytes(range(256)) * 64  # binary with NUL bytes -> LFS
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("hello")
    out = run_client(
        hub,
        tmp_path,
        f"""
        import json, pathlib
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download
        from huggingface_hub.errors import RevisionNotFoundError, EntryNotFoundError, RepositoryNotFoundError
        api, src, out = HfApi(), pathlib.Path({str(folder)!r}), {{}}
        api.create_repo("tester/m1")
        first = api.upload_folder(folder_path=src, repo_id="tester/m1")
        snap = pathlib.Path(snapshot_download("tester/m1", cache_dir="fresh1"))
        out["same"] = all((snap / p).read_bytes() == (src / p).read_bytes()
                          for p in ["model.safetensors", "config.json", "sub/notes.txt"])
        out["files"] = sorted(api.list_repo_files("tester/m1"))
        out["sub"] = [e.path for e in api.list_repo_tree("tester/m1", path_in_repo="sub")]
        info = api.model_info("tester/m1", files_metadata=True)
        out["lfs"] = sorted(s.rfilename for s in info.siblings if s.lfs)
        out["paths_info"] = sorted(e.path for e in api.get_paths_info("tester/m1", ["config.json", "nope"]))
        api.create_branch("tester/m1", branch="dev")
        api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id="tester/m1", revision="dev")
        dev = pathlib.Path(snapshot_download("tester/m1", revision="dev", cache_dir="fresh2"))
        out["dev"] = (dev / "dev.txt").read_text()
        out["main_has_dev"] = api.file_exists("tester/m1", "dev.txt")
        out["by_sha"] = pathlib.Path(hf_hub_download("tester/m1", "config.json", revision=first.oid,
                                                     cache_dir="fresh3")).read_text()
        for name, call in [("rev", lambda: hf_hub_download("tester/m1", "config.json", revision="nope")),
                           ("entry", lambda: hf_hub_download("tester/m1", "missing.json")),
                           ("repo", lambda: hf_hub_download("tester/none", "config.json"))]:
            try:
                call()
            except (RevisionNotFoundError, EntryNotFoundError, RepositoryNotFoundError) as e:
                out[name] = type(e).__name__
        print(json.dumps(out))
        """,
    )
    assert out["same"] and out["files"] == [
        ".gitattributes",
        "config.json",
        "model.safetensors",
        "sub/notes.txt",
    ]
    assert out["sub"] == ["sub/notes.txt"] and out["paths_info"] == ["config.json"]
    assert out["lfs"] == ["model.safetensors"]  # config.json went through the regular path
    assert out["dev"] == "dev only" and out["main_has_dev"] is False
    assert out["by_sha"] == '{"hidden_size": 8}'
    assert out["rev"] == "RevisionNotFoundError" and out["entry"] == "RemoteEntryNotFoundError"
    assert out["repo"] == "RepositoryNotFoundError"
    assert hub.store.lfs and weights in hub.store.lfs.values()


def test_readme_front_matter_is_validated(hub, tmp_path):
    out = run_client(
        hub,
        tmp_path,
        """
        import json, pathlib
        from huggingface_hub import HfApi
        from huggingface_hub.errors import BadRequestError
        api, out = HfApi(), {}
        api.create_repo("tester/cards")
        good = ("---\\nlicense: apache-2.0\\ntags: [neurotrain]\\ndatasets: [drive]\\nmodel-index:\\n- name: m\\n"
                "  results:\\n  - task: {type: image-segmentation}\\n    dataset: {name: DRIVE, type: drive}\\n"
                "    metrics: [{type: dice, value: 0.8}]\\n---\\n# card\\n")
        api.upload_file(path_or_fileobj=good.encode(), path_in_repo="README.md", repo_id="tester/cards")
        bad = {"license": "---\\nlicense: not-a-license\\n---\\n",
               "model_index": "---\\nmodel-index:\\n- name: m\\n  results: [{task: {type: x}}]\\n---\\n",
               "tags": "---\\ntags: neurotrain\\n---\\n",
               "yaml": "---\\nlicense: [unclosed\\n---\\n"}
        for name, text in bad.items():
            try:
                api.upload_file(path_or_fileobj=text.encode(), path_in_repo="README.md", repo_id="tester/cards")
            except ValueError as e:  # the client's validate-yaml call
                out[name] = str(e)
        HfApi._validate_yaml = lambda *a, **k: None  # skip the client check: the commit itself is refused
        try:
            api.upload_file(path_or_fileobj=bad["license"].encode(), path_in_repo="README.md", repo_id="tester/cards")
        except BadRequestError as e:
            out["commit"] = str(e)
        api.create_repo("tester/demo", repo_type="space", space_sdk="gradio")
        space = pathlib.Path("space")
        space.mkdir()
        (space / "README.md").write_text("---\\nsdk: gradio\\nsdk_version: 5.0.0\\napp_file: app.py\\n---\\n")
        try:
            api.upload_folder(folder_path=space, repo_id="tester/demo", repo_type="space")
        except BadRequestError as e:
            out["app_file"] = str(e)
        (space / "app.py").write_text("print('demo')")
        api.upload_folder(folder_path=space, repo_id="tester/demo", repo_type="space")
        (space / "README.md").write_text("---\\nsdk: flask\\nsdk_version: 5\\n---\\n")
        try:
            api.upload_folder(folder_path=space, repo_id="tester/demo", repo_type="space")
        except ValueError as e:  # refused by validate-yaml already
            out["sdk"] = str(e)
        out["space_files"] = sorted(api.list_repo_files("tester/demo", repo_type="space"))
        print(json.dumps(out))
        """,
    )
    assert "Invalid metadata in README.md" in out["license"] and '"license"' in out["license"]
    assert '"model-index"' in out["model_index"] and "dataset" in out["model_index"]
    assert '"tags"' in out["tags"] and "Invalid YAML" in out["yaml"]
    assert "Bad request" in out["commit"] and '"license"' in out["commit"]
    assert "Bad request" in out["app_file"] and '"app_file"' in out["app_file"]
    assert '"sdk"' in out["sdk"] and '"sdk_version"' in out["sdk"]
    assert out["space_files"] == [".gitattributes", "README.md", "app.py"]


def test_transformers_push_to_hub_then_from_pretrained(hub, tmp_path):
    out = run_client(
        hub,
        tmp_path,
        """
        import json, torch
        from transformers import AutoModel, BertConfig, BertModel
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=16)
        model = BertModel(cfg)
        model.push_to_hub("tester/tiny-bert")
        model.push_to_hub("tester/tiny-bert", revision="dev", commit_message="dev copy")
        out = {}
        for rev in ("main", "dev"):
            loaded = AutoModel.from_pretrained("tester/tiny-bert", revision=rev, cache_dir="fresh-" + rev)
            ref, got = model.state_dict(), loaded.state_dict()
            out[rev] = sorted(ref) == sorted(got) and all(torch.equal(ref[k], got[k]) for k in ref)
        try:
            AutoModel.from_pretrained("tester/tiny-bert", revision="nope", cache_dir="fresh-x")
        except OSError as e:
            out["bad_rev"] = "not a valid git identifier" in str(e)
        print(json.dumps(out))
        """,
        timeout=180,
    )
    assert out == {"main": True, "dev": True, "bad_rev": True}
    files = hub.store.repos["models/tester/tiny-bert"]
    head = files.commits[files.branches["main"]]
    assert head["model.safetensors"][1] is True and head["config.json"][1] is False


def test_datasets_push_to_hub_then_load_dataset_with_images(hub, tmp_path):
    out = run_client(
        hub,
        tmp_path,
        """
        import json
        import numpy as np
        import datasets
        from PIL import Image
        datasets.config.USE_PARQUET_EXPORT = False  # no datasets-server lookup
        rng = np.random.default_rng(0)
        images = [Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(3)]
        ds = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 2], "name": ["a", "b", "c"]})
        ds = ds.cast_column("image", datasets.Image())
        ds.push_to_hub("tester/ds1")
        back = datasets.load_dataset("tester/ds1", split="train", cache_dir="fresh")
        out = {"labels": list(back["label"]), "names": list(back["name"]),
               "pixels": all(np.array_equal(np.asarray(a), np.asarray(b["image"]))
                             for a, b in zip(images, back))}
        print(json.dumps(out))
        """,
        timeout=180,
    )
    assert out == {"labels": [0, 1, 2], "names": ["a", "b", "c"], "pixels": True}
    repo = hub.store.repos["datasets/tester/ds1"]
    head = repo.commits[repo.branches["main"]]
    parquet = [p for p in head if p.startswith("data/") and p.endswith(".parquet")]
    assert parquet and all(head[p][1] for p in parquet)  # parquet shards went through LFS
    assert b"dataset_info" in head["README.md"][0] and b"configs" in head["README.md"][0]


def test_lfs_put_is_checked_and_ranges_and_errors_over_raw_http(hub):
    """Protocol details the clients rely on but rarely hit: checked LFS PUTs, Range reads, error codes."""
    import hashlib
    import urllib.error
    import urllib.request

    base = f"http://127.0.0.1:{hub.server_address[1]}"

    def call(method, path, body=None, headers=None, token=WRITE):
        auth = {"authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(
            base + path, data=body, method=method, headers={**auth, **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    assert call("POST", "/api/repos/create", json.dumps({"name": "raw"}).encode())[0] == 200
    data = b"\0weights" * 100
    oid = hashlib.sha256(data).hexdigest()
    batch = {"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}
    assert (
        call("POST", "/tester/raw.git/info/lfs/objects/batch", json.dumps(batch).encode(), token=None)[0]
        == 401
    )
    _, _, body = call("POST", "/tester/raw.git/info/lfs/objects/batch", json.dumps(batch).encode())
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"][len(base) :]
    assert call("PUT", href, data[:-1], token=None)[0] == 400  # wrong size/sha256 refused
    assert call("PUT", href, data, token=None)[0] == 200
    ndjson = "\n".join(
        json.dumps(line)
        for line in [
            {"key": "header", "value": {"summary": "w"}},
            {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(data)}},
        ]
    )
    assert call("POST", "/api/models/tester/raw/commit/main", ndjson.encode())[0] == 200
    missing = ndjson.replace(oid, "0" * 64)
    assert call("POST", "/api/models/tester/raw/commit/main", missing.encode())[0] == 400
    stale = ndjson.replace('"summary": "w"', '"summary": "w", "parentCommit": "' + "1" * 40 + '"')
    assert call("POST", "/api/models/tester/raw/commit/main", stale.encode())[0] == 412
    status, headers, part = call("GET", "/tester/raw/resolve/main/w.bin", headers={"Range": "bytes=1-7"})
    assert status == 206 and part == data[1:8] and headers["Content-Range"] == f"bytes 1-7/{len(data)}"
    status, headers, _ = call("HEAD", "/tester/raw/resolve/main/w.bin")
    assert headers["X-Linked-Etag"] == f'"{oid}"' and headers["X-Linked-Size"] == str(len(data))
    assert call("GET", "/api/models/tester/raw/tree/main/nope")[1]["X-Error-Code"] == "EntryNotFound"
    assert call("GET", "/api/models/tester/raw/revision/nope")[1]["X-Error-Code"] == "RevisionNotFound"
    assert call("GET", "/api/models/tester/other")[1]["X-Error-Code"] == "RepoNotFound"


SPACES = Path(__file__).resolve().parents[1] / "spaces"


def space_errors(folder: Path) -> list[str]:
    """The double's Space checks on a Space folder as it would be committed (its files, its README)."""
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    return front_matter_errors((folder / "README.md").read_text(encoding="utf-8"), "spaces", files)


def test_every_shipped_space_card_passes_the_front_matter_checks():
    folders = sorted(p.parent for p in SPACES.rglob("README.md"))
    names = {p.relative_to(SPACES).as_posix() for p in folders}
    demos = {
        "classification-demo",
        "segmentation-demo",
        "segmentation3d-demo",
        "clip-demo",
        "detection-demo",
        "vlm-demo",
    }
    assert names >= demos | {"metrics/dice", "metrics/classification"}, names
    for folder in folders:
        assert space_errors(folder) == [], folder
        # gradio Spaces whose app file the checks above found (an sdk-less card would skip them)
        meta = yaml.safe_load((folder / "README.md").read_text(encoding="utf-8").split("---")[1])
        assert meta["sdk"] == "gradio" and isinstance(meta["sdk_version"], str), folder


def test_a_space_card_with_a_bad_sdk_or_a_missing_app_file_is_refused(tmp_path):
    space = tmp_path / "demo"
    shutil.copytree(SPACES / "segmentation-demo", space, ignore=shutil.ignore_patterns("__pycache__"))
    readme = (space / "README.md").read_text(encoding="utf-8")
    assert "sdk: gradio\n" in readme and "app_file: app.py\n" in readme and space_errors(space) == []
    (space / "README.md").write_text(readme.replace("sdk: gradio\n", "sdk: flask\n"), encoding="utf-8")
    assert space_errors(space) == ["\"sdk\" must be one of gradio, streamlit, docker, static, got 'flask'"]
    (space / "README.md").write_text(
        readme.replace("sdk_version: 6.31.0", "sdk_version: 6.3"), encoding="utf-8"
    )
    assert space_errors(space) == ['"sdk_version" must be a string, got 6.3']
    (space / "README.md").write_text(readme, encoding="utf-8")
    (space / "app.py").rename(space / "main.py")
    assert space_errors(space) == ["\"app_file\" 'app.py' does not exist in the Space"]
    with pytest.raises(ValueError, match="unknown repo kind 'space'"):  # the old typo can no longer pass
        front_matter_errors(readme, "space", set())

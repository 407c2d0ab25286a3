"""A 127.0.0.1 test double of the Hugging Face Hub HTTP API (see ../shared/docs/hub-protocol.md, letters = its table).

Endpoints ({t} = models|datasets|spaces, {pfx} = ""|datasets/|spaces/, {id} = ns/name, {rev} = branch, tag,
``refs/pr/N`` or a 40-hex commit):
  A GET  /api/whoami-v2                          B POST /api/repos/create       C DELETE /api/repos/delete
  D POST /api/validate-yaml                      E GET  /api/{t}/{id}[/revision/{rev}]
  F GET  /api/{t}/{id}/tree/{rev}[/{path}]       G POST /api/{t}/{id}/paths-info/{rev}
  H GET  /api/{t}/{id}/refs                      I POST|DELETE /api/{t}/{id}/branch/{branch}
  J POST /api/{t}/{id}/tag/{rev}, DELETE .../tag/{tag}   K GET /api/{t}/{id}/commits/{rev}
  L POST /api/{t}/{id}/preupload/{rev}           P POST /api/{t}/{id}/commit/{rev}[?create_pr=1]
  M POST /{pfx}{id}.git/info/lfs/objects/batch   N PUT /_lfs/{ticket}     O POST /_lfs/{ticket}/verify
  Q/R/S HEAD|GET /{pfx}{id}/resolve/{rev}/{path} (Range -> 206; LFS files add X-Linked-Etag/X-Linked-Size)

Rules enforced (as the Hub does, unless marked "stricter"):
  * Auth: ``tokens`` maps token -> (user, "read"|"write") (a bare role means user ``tester``); ``orgs`` maps an
    organisation -> its member users. An unknown token on any request -> 401 "Invalid credentials".
    Writes (B, C, I, J, L, M, O, P) need a write token: none -> 401, a read token -> 403, both with
    X-Error-Message. Namespaces: a user creates, deletes and writes repos only under their own name or an org
    they belong to, else 403 (B with ``organization: null`` means the token's user). Public repos read without
    a token; a private repo is seen only by its namespace's user or org members: to anyone else (another
    user's token, no token) it does not exist (404 RepoNotFound), for reads and writes alike.
    Every token received is recorded in ``store.seen_tokens``; every answer in ``store.requests``.
  * Errors: 404 + X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound (+ X-Repo-Commit on resolve).
    Commits go to a branch only (missing -> RevisionNotFound; the client creates it first via I), a stale
    parentCommit -> 412, an lfsFile whose object was never uploaded -> 400. Commit shas are random and unique.
  * LFS: preupload answers "lfs" for paths matching the repo's .gitattributes ``filter=lfs`` patterns (new repos
    get the Hub's default .gitattributes), > 10 MB, or a sample with a NUL byte; else "regular". The batch API
    hands out single-use upload hrefs; the PUT is checked against the sha256 and size.
  * README.md front matter, on P (-> 400, BadRequestError) and on D (-> 400 {"errors": [...]}, ValueError):
    valid YAML mapping; ``license`` a known id (string); ``tags`` list of strings; models: ``datasets`` list of
    strings, ``model-index`` list of {name, results: [{task: {type}, dataset: {name, type}, metrics: [{type,
    value}]}]}; spaces: ``sdk`` in gradio/streamlit/docker/static, ``sdk_version`` a string. Stricter than the
    Hub: on P, a gradio/streamlit Space must contain its ``app_file`` (default app.py) after the commit (the Hub
    accepts the commit and fails the Space build instead). Uses PyYAML (installed with huggingface_hub).
Run with ``python tests/hub_double.py PORT_FILE [TOKEN=[USER:]ROLE ...]``; in-process use
``serve(port, tokens=..., orgs=...)``.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

USER = "tester"
TOKENS = {  # token -> (user, role)
    "hf_test_write": (USER, "write"),
    "hf_test_read": (USER, "read"),
    "hf_secret_test_token": (USER, "write"),
    "hf_other_write": ("other", "write"),
}
ORGS = {"neurotrain": {USER}, "other-org": {"other"}}  # org -> members
LFS_PATTERNS = re.findall(
    r"\S+",
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy *.npz "
    "*.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors *.tar.* *.tar *.tflite *.tgz "
    "*.wasm *.xz *.zip *.zst *tfevents* *.png *.jpg *.jpeg *.webp *.gif *.tiff *.nii *.nii.gz *.mp3 *.wav",
)
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
LICENSES = set(
    re.findall(
        r"\S+",
        "apache-2.0 mit openrail openrail++ bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 "
        "bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc "
        "cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 "
        "cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 "
        "cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 "
        "eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc lppl-1.3c ms-pl mpl-2.0 odc-by odbl "
        "osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr llama2 llama3 llama3.1 llama3.2 gemma unknown other",
    )
)
SDKS = ("gradio", "streamlit", "docker", "static")


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, kind: str, repo_id: str, private: bool, sdk: str | None) -> None:
        self.kind, self.id, self.private, self.sdk = kind, repo_id, private, sdk
        sha = secrets.token_hex(20)
        self.commits: dict[str, dict[str, tuple[bytes, bool]]] = {
            sha: {".gitattributes": (GITATTRIBUTES, False)}
        }
        self.log: dict[str, dict] = {sha: {"id": sha, "title": "initial commit", "parent": None}}
        self.branches: dict[str, str] = {"main": sha}
        self.tags: dict[str, str] = {}

    def resolve(self, rev: str | None) -> str:
        rev = rev or "main"
        sha = self.branches.get(rev) or self.tags.get(rev) or (rev if rev in self.commits else None)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha


class Store:
    def __init__(
        self, tokens: dict[str, tuple[str, str] | str] | None = None, orgs: dict[str, set[str]] | None = None
    ) -> None:
        given = TOKENS if tokens is None else tokens
        self.tokens = {t: (USER, v) if isinstance(v, str) else tuple(v) for t, v in given.items()}
        self.orgs = {org: set(members) for org, members in (ORGS if orgs is None else orgs).items()}
        self.repos: dict[str, Repo] = {}  # "models/ns/name" -> Repo
        self.lfs: dict[str, bytes] = {}  # sha256 -> content
        self.tickets: dict[str, tuple[str, int]] = {}  # upload ticket -> (oid, size)
        self.seen_tokens: set[str] = set()
        self.requests: list[tuple[str, str, int]] = []  # (method, path without query, status), in order
        self.lock = threading.RLock()


def front_matter_errors(text: str, kind: str, files: set[str] | None = None) -> list[str]:
    """The Hub's README.md metadata checks for the fields we write (``files``: repo content after a commit)."""
    if kind not in (
        "models",
        "datasets",
        "spaces",
    ):  # the plural, as in /api/{t}/...; a typo must not skip checks
        raise ValueError(f"unknown repo kind {kind!r}: models, datasets or spaces")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        return []
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        return [f"Invalid YAML in README.md metadata: {str(exc).splitlines()[0]}"]
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["Invalid metadata in README.md: the YAML front matter must be a mapping"]
    errors = []

    def str_list(field: str) -> None:
        value = meta.get(field)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            errors.append(f'"{field}" must be an array of strings')

    if "license" in meta and not (isinstance(meta["license"], str) and meta["license"] in LICENSES):
        errors.append(f'"license" must be one of the Hub license ids, got {meta["license"]!r}')
    str_list("tags")
    if kind == "models":
        str_list("datasets")
        if "model-index" in meta:
            errors += [f'"model-index" {e}' for e in model_index_errors(meta["model-index"])]
    if kind == "spaces":
        if "sdk" in meta and meta["sdk"] not in SDKS:
            errors.append(f'"sdk" must be one of {", ".join(SDKS)}, got {meta["sdk"]!r}')
        if "sdk_version" in meta and not isinstance(meta["sdk_version"], str):
            errors.append(f'"sdk_version" must be a string, got {meta["sdk_version"]!r}')
        app_file = meta.get("app_file", "app.py")
        if files is not None and meta.get("sdk") in ("gradio", "streamlit") and app_file not in files:
            errors.append(f'"app_file" {app_file!r} does not exist in the Space')
    return errors


def model_index_errors(index) -> list[str]:
    if not isinstance(index, list):
        return ["must be an array"]
    errors = []
    for i, model in enumerate(index):
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            errors.append(f"[{i}].name must be a string")
            continue
        results = model.get("results")
        if not isinstance(results, list):
            errors.append(f"[{i}].results must be an array")
            continue
        for j, res in enumerate(results):
            where = f"[{i}].results[{j}]"
            task, data, metrics = (
                res.get(k) if isinstance(res, dict) else None for k in ("task", "dataset", "metrics")
            )
            if not isinstance(task, dict) or not isinstance(task.get("type"), str):
                errors.append(f"{where}.task.type must be a string")
            if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("name", "type")):
                errors.append(f"{where}.dataset must have string name and type")
            if not isinstance(metrics, list) or not metrics:
                errors.append(f"{where}.metrics must be a non-empty array")
                continue
            for k, metric in enumerate(metrics):
                ok = isinstance(metric, dict) and isinstance(metric.get("type"), str)
                if not ok or metric.get("value") is None:
                    errors.append(f"{where}.metrics[{k}] must have a string type and a value")
    return errors


def is_lfs(path: str, size: int, sample: bytes, gitattributes: bytes) -> bool:
    patterns = [
        ln.split()[0] for ln in gitattributes.decode(errors="replace").splitlines() if "filter=lfs" in ln
    ]
    name = path.rsplit("/", 1)[-1]
    if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns):
        return True
    return size > 10 * 1024 * 1024 or b"\0" in sample


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    @property
    def store(self) -> Store:
        return self.server.store

    def _base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return out
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload=None, headers: dict | None = None) -> None:
        body = (
            payload if isinstance(payload, bytes) else json.dumps({} if payload is None else payload).encode()
        )
        self.store.requests.append((self.command, urlsplit(self.path).path, status))
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _caller(self) -> tuple[str, str] | None:
        """(user, role) of the request's token; None without one."""
        value = self.headers.get("authorization", "")
        if not value.startswith("Bearer "):
            return None
        token = value[7:].strip()
        self.store.seen_tokens.add(token)
        if token not in self.store.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.store.tokens[token]

    def _need_write(self, caller: tuple[str, str] | None) -> None:
        if caller is None:
            raise HubError(
                401, "You must be authenticated to write to the Hub: set HF_TOKEN or run `hf auth login`"
            )
        if caller[1] != "write":
            raise HubError(403, "You don't have the rights to write to this repository (read-only token)")

    def _member(self, namespace: str, caller: tuple[str, str] | None) -> bool:
        """Whether the caller's user owns ``namespace`` (their name, or an org they belong to)."""
        return caller is not None and (
            namespace == caller[0] or caller[0] in self.store.orgs.get(namespace, ())
        )

    def _need_namespace(self, namespace: str, caller: tuple[str, str] | None, what: str) -> None:
        if not self._member(namespace, caller):
            raise HubError(403, f'You don\'t have the rights to {what} under the namespace "{namespace}"')

    def _repo(self, kind: str, repo_id: str, caller: tuple[str, str] | None, write: bool = False) -> Repo:
        """The repo as this caller may see it: a private repo outside their namespaces does not exist."""
        repo = self.store.repos.get(f"{kind}/{repo_id}")
        namespace = repo_id.split("/")[0]
        if repo is None or (repo.private and not self._member(namespace, caller)):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write:
            self._need_namespace(namespace, caller, f"write to the {kind[:-1]} {repo_id}")
        return repo

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.split("/")[1:]]  # split raw, then unquote each piece
        body = self._body() if self.command in ("POST", "PUT", "DELETE") else b""
        if parts[0] == "_lfs":
            return self._lfs_object(parts[1:], body)
        role = self._caller()
        if parts[0] == "api":
            return self._api(parts[1:], query, body, role)
        kind = parts[0] if parts[0] in ("datasets", "spaces") else "models"
        rest = parts[1:] if kind != "models" else parts
        if len(rest) >= 3 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
            self._need_write(role)
            return self._lfs_batch(self._repo(kind, f"{rest[0]}/{rest[1][:-4]}", role, write=True), body)
        if len(rest) >= 5 and rest[2] == "resolve":
            return self._resolve(self._repo(kind, f"{rest[0]}/{rest[1]}", role), rest[3], "/".join(rest[4:]))
        raise HubError(404, f"unknown route {url.path}")

    def _handle(self) -> None:
        try:
            with self.store.lock:
                self._dispatch()
        except HubError as e:
            headers = {
                "X-Error-Message": e.message,
                **e.headers,
                **({"X-Error-Code": e.code} if e.code else {}),
            }
            self._send(e.status, {"error": e.message}, headers)
        except Exception as e:  # a bug in the double: answer 400 (a 5xx makes the clients back off ~23 s)
            self._send(
                400, {"error": f"hub double bug: {e!r}"}, {"X-Error-Message": f"hub double bug: {e!r}"}
            )

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    # --- /api -----------------------------------------------------------------------------------------------
    def _api(self, parts: list[str], query: dict, body: bytes, role: tuple[str, str] | None) -> None:
        if parts == ["whoami-v2"]:
            if role is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            token = {"displayName": "test", "role": role[1]}
            orgs = [
                {"type": "org", "name": o}
                for o, members in sorted(self.store.orgs.items())
                if role[0] in members
            ]
            return self._send(
                200, {"type": "user", "name": role[0], "orgs": orgs, "auth": {"accessToken": token}}
            )
        if parts == ["validate-yaml"]:
            req = json.loads(body)
            kind = (req.get("repoType") or "model") + "s"
            errors = front_matter_errors(req.get("content", ""), kind)
            if errors:
                return self._send(
                    400,
                    {"errors": [{"message": e} for e in errors], "warnings": []},
                    {"X-Error-Message": errors[0]},
                )
            return self._send(200, {"errors": [], "warnings": []})
        if parts[:1] == ["repos"]:
            self._need_write(role)
            req = json.loads(body or b"{}")
            kind = {"space": "spaces", "dataset": "datasets"}.get(req.get("type"), "models")
            namespace = req.get("organization") or role[0]
            repo_id = f"{namespace}/{req['name']}"
            url = f"{self._base()}/{'' if kind == 'models' else kind + '/'}{repo_id}"
            key = f"{kind}/{repo_id}"
            verb = "create" if parts[1:] == ["create"] else "delete"
            self._need_namespace(namespace, role, f"{verb} a {kind[:-1]}")
            if parts[1:] == ["create"]:
                if key in self.store.repos:
                    return self._send(
                        409, {"error": f"You already created this {kind[:-1]} repo", "url": url}
                    )
                private = bool(req.get("private")) or req.get("visibility") == "private"
                self.store.repos[key] = Repo(kind, repo_id, private, req.get("sdk"))
                return self._send(200, {"url": url, "name": repo_id, "id": repo_id})
            if parts[1:] == ["delete"]:
                if self.store.repos.pop(key, None) is None:
                    raise HubError(404, "Repository not found", "RepoNotFound")
                return self._send(200, {})
        if len(parts) < 3 or parts[0] not in ("models", "datasets", "spaces"):
            raise HubError(404, f"unknown route /api/{'/'.join(parts)}")
        action, args = (parts[3], parts[4:]) if len(parts) > 3 else ("revision", [])
        write = self.command in ("POST", "DELETE") and action != "paths-info"
        if write:
            self._need_write(role)  # before the repo lookup: a write without a token is a 401 even if private
        repo = self._repo(parts[0], f"{parts[1]}/{parts[2]}", role, write)
        rev = args[0] if args else None
        if action == "revision" and self.command == "GET":
            return self._send(200, self._info(repo, repo.resolve(rev), query.get("blobs") == "true"))
        if action == "tree":
            sha = repo.resolve(rev)
            return self._send(
                200, self._tree(repo, sha, "/".join(args[1:]), query.get("recursive") == "true")
            )
        if action == "paths-info":
            wanted = set(parse_qs(body.decode()).get("paths", []))
            return self._send(
                200, [e for e in self._tree(repo, repo.resolve(rev), "", True) if e["path"] in wanted]
            )
        if action == "refs":
            refs = {"branches": [], "converts": [], "tags": [], "pullRequests": []}
            for name, sha in repo.branches.items():
                group = "pullRequests" if name.startswith("refs/pr/") else "branches"
                refs[group].append({"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha})
            refs["tags"] = [
                {"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in repo.tags.items()
            ]
            return self._send(200, refs)
        if action == "commits" and self.command == "GET":
            sha, out = repo.resolve(rev), []
            while sha:
                out.append(
                    {**repo.log[sha], "message": "", "date": "2026-01-01T00:00:00.000Z", "authors": []}
                )
                sha = repo.log[sha]["parent"]
            return self._send(200, out)
        if action in ("branch", "tag"):
            refs = repo.branches if action == "branch" else repo.tags
            req = json.loads(body or b"{}")
            name = rev if action == "branch" else req.get("tag", rev)
            if self.command == "DELETE":
                if refs.pop(rev, None) is None:
                    raise HubError(404, f"{action} {rev} not found", "RevisionNotFound")
                return self._send(200, {})
            if name in refs:
                return self._send(409, {"error": f"{action} {name} already exists"})
            refs[name] = repo.resolve(req.get("startingPoint") if action == "branch" else rev)
            return self._send(200, {})
        if action == "preupload":
            files = repo.commits[repo.resolve(rev)]
            attrs = files.get(".gitattributes", (b"", False))[0]
            out = []
            for f in json.loads(body)["files"]:
                lfs = is_lfs(f["path"], f["size"], base64.b64decode(f.get("sample", "")), attrs)
                out.append(
                    {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
                )
            return self._send(200, {"files": out})
        if action == "commit":
            return self._commit(repo, rev or "main", body, query.get("create_pr") in ("1", "true"))
        raise HubError(404, f"unknown route /api/{'/'.join(parts)}")

    def _info(self, repo: Repo, sha: str, blobs: bool) -> dict:
        siblings = []
        for path, (data, lfs) in sorted(repo.commits[sha].items()):
            entry = {"rfilename": path}
            if blobs:
                entry.update(size=len(data), blobId=blob_sha1(data))
                if lfs:
                    entry["lfs"] = {
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "pointerSize": 134,
                    }
            siblings.append(entry)
        info = {"id": repo.id, "sha": sha, "siblings": siblings, "tags": [], "private": repo.private}
        info.update(lastModified="2026-01-01T00:00:00.000Z", disabled=False, gated=False)
        return {**info, "sdk": repo.sdk} if repo.kind == "spaces" else info

    def _tree(self, repo: Repo, sha: str, base: str, recursive: bool) -> list[dict]:
        files, prefix, out, dirs = repo.commits[sha], f"{base}/" if base else "", [], set()
        for path, (data, lfs) in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix) :].split("/")
            for i in range(1, len(rel) if recursive else min(len(rel), 2)):
                dirs.add(prefix + "/".join(rel[:i]))
            if len(rel) == 1 or recursive:
                entry = {"type": "file", "path": path, "oid": blob_sha1(data), "size": len(data)}
                if lfs:
                    entry["lfs"] = {
                        "oid": hashlib.sha256(data).hexdigest(),
                        "size": len(data),
                        "pointerSize": 134,
                    }
                out.append(entry)
        if base and not out and not dirs:
            raise HubError(404, f"{base} does not exist on {sha}", "EntryNotFound")
        out += [
            {"type": "directory", "path": d, "oid": blob_sha1(d.encode()), "size": 0} for d in sorted(dirs)
        ]
        return out

    def _commit(self, repo: Repo, branch: str, body: bytes, create_pr: bool) -> None:
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch} is not a branch", "RevisionNotFound")
        head = repo.branches[branch]
        files, summary = dict(repo.commits[head]), "commit"
        for line in body.decode().splitlines():
            op = json.loads(line) if line.strip() else {"key": None}
            key, value = op["key"], op.get("value", {})
            if key == "header":
                summary = value.get("summary") or summary
                if value.get("parentCommit") and value["parentCommit"] != head:
                    raise HubError(412, f"parentCommit {value['parentCommit']} is not the head of {branch}")
            elif key == "file":
                files[value["path"]] = (base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                if value["oid"] not in self.store.lfs:
                    raise HubError(400, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                files[value["path"]] = (self.store.lfs[value["oid"]], True)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                files = {p: f for p, f in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
        if "README.md" in files and files["README.md"] != repo.commits[head].get("README.md"):
            errors = front_matter_errors(
                files["README.md"][0].decode(errors="replace"), repo.kind, set(files)
            )
            if errors:
                raise HubError(400, "Invalid metadata in README.md: " + "; ".join(errors))
        sha = secrets.token_hex(20)
        repo.commits[sha], repo.log[sha] = files, {"id": sha, "title": summary, "parent": head}
        pr_url = None
        if create_pr:
            number = 1 + sum(name.startswith("refs/pr/") for name in repo.branches)
            repo.branches[f"refs/pr/{number}"] = sha
            pr_url = f"{self._base()}/{self._pfx(repo)}{repo.id}/discussions/{number}"
        else:
            repo.branches[branch] = sha
        url = f"{self._base()}/{self._pfx(repo)}{repo.id}/commit/{sha}"
        return self._send(
            200, {"commitOid": sha, "commitUrl": url, "pullRequestUrl": pr_url, "success": True}
        )

    @staticmethod
    def _pfx(repo: Repo) -> str:
        return "" if repo.kind == "models" else f"{repo.kind}/"

    # --- LFS and file downloads ------------------------------------------------------------------------
    def _lfs_batch(self, repo: Repo, body: bytes) -> None:
        objects = []
        for obj in json.loads(body)["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.store.lfs:
                ticket = secrets.token_hex(16)
                self.store.tickets[ticket] = (obj["oid"], obj["size"])
                href = f"{self._base()}/_lfs/{ticket}"
                entry["actions"] = {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}}
            objects.append(entry)
        return self._send(200, {"transfer": "basic", "objects": objects})

    def _lfs_object(self, parts: list[str], body: bytes) -> None:
        if parts[0] not in self.store.tickets:
            raise HubError(403, "unknown or expired LFS upload href")
        oid, size = self.store.tickets[parts[0]]
        if self.command == "PUT":
            if len(body) != size or hashlib.sha256(body).hexdigest() != oid:
                raise HubError(400, f"LFS upload does not match oid {oid} / size {size}")
            self.store.lfs[oid] = body
            return self._send(200, {})
        self._need_write(self._caller())  # verify carries auth
        if oid not in self.store.lfs:
            raise HubError(404, f"LFS object {oid} not uploaded", "EntryNotFound")
        self.store.tickets.pop(parts[0])
        return self._send(200, {})

    def _resolve(self, repo: Repo, rev: str, path: str) -> None:
        sha = repo.resolve(rev)
        if path not in repo.commits[sha]:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        data, lfs = repo.commits[sha][path]
        etag = hashlib.sha256(data).hexdigest() if lfs else blob_sha1(data)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        match = re.match(r"bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
        if match and self.command == "GET":
            start = int(match.group(1) or 0)
            end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
            if start >= len(data):
                raise HubError(416, "Requested range not satisfiable")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(206, data[start : end + 1], headers)
        if self.command == "HEAD":
            headers["Content-Length"] = str(len(data))
        return self._send(200, data, headers)


def client_env(server: ThreadingHTTPServer, home, token: str | None = None) -> dict[str, str]:
    """The environment a client process needs to talk to this double (HF_ENDPOINT is read at import)."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
        HF_HOME=str(home),
        HF_HUB_OFFLINE="0",
        HF_DATASETS_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_UPDATE_DOWNLOAD_COUNTS="0",
        DISABLE_SAFETENSORS_CONVERSION="1",
        PYTHONUNBUFFERED="1",
    )
    if token:
        env["HF_TOKEN"] = token
    return env


def serve(
    port: int = 0,
    tokens: dict[str, tuple[str, str] | str] | None = None,
    orgs: dict[str, set[str]] | None = None,
) -> ThreadingHTTPServer:
    """Start the double on 127.0.0.1:``port`` in a daemon thread; ``server.store`` holds repos and tokens seen."""
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.store = Store(tokens, orgs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    extra = dict(arg.split("=", 1) for arg in sys.argv[2:])  # TOKEN=ROLE or TOKEN=USER:ROLE
    srv = serve(tokens={**TOKENS, **{t: tuple(v.split(":")) if ":" in v else v for t, v in extra.items()}})
    with open(sys.argv[1], "w") as f:
        f.write(str(srv.server_address[1]))
    threading.Event().wait()

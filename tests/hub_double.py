"""A 127.0.0.1 test double of the Hub endpoints our publishing and evaluate.load use (see hub-protocol.md).

Covers: create repo (B), validate-yaml (D), repo info (E), preupload (L, all files regular), commit (P),
and resolve HEAD/GET (Q/R/S, with 404 + X-Error-Code for missing revisions/files). Tokens are recorded
so tests can check where they went. Run with ``python tests/hub_double.py PORT_FILE``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class Store:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # "spaces/ns/name" -> {"sha": ..., "files": {path: bytes}}
        self.lock = threading.Lock()
        self.tokens: set[str] = set()


STORE = Store()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    # --- helpers ----------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload=None, headers: dict | None = None, head: bool = False) -> None:
        body = (
            payload
            if isinstance(payload, bytes)
            else json.dumps(payload if payload is not None else {}).encode()
        )
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _auth(self) -> None:
        value = self.headers.get("authorization", "")
        if value.startswith("Bearer "):
            STORE.tokens.add(value[7:])

    def _base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # --- routes -----------------------------------------------------------------------------------
    def do_POST(self) -> None:
        self._auth()
        path = urlsplit(self.path).path
        body = self._body()
        if path == "/api/repos/create":
            req = json.loads(body)
            kind = {"space": "spaces", "dataset": "datasets"}.get(req.get("type"), "models")
            key = f"{kind}/{req.get('organization') or 'tester'}/{req['name']}"
            prefix = "" if kind == "models" else f"{kind}/"
            url = f"{self._base()}/{prefix}{key.split('/', 1)[1]}"
            with STORE.lock:
                if key in STORE.repos:
                    return self._send(409, {"error": "You already created this repo", "url": url})
                STORE.repos[key] = {"sha": secrets.token_hex(20), "files": {".gitattributes": b""}}
            return self._send(200, {"url": url})
        if path == "/api/validate-yaml":
            return self._send(200, {"errors": [], "warnings": []})
        parts = path.split("/")
        if len(parts) >= 7 and parts[1] == "api" and parts[5] == "preupload":
            files = json.loads(body)["files"]
            return self._send(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                },
            )
        if len(parts) >= 7 and parts[1] == "api" and parts[5] == "commit":
            key = "/".join(parts[2:5])
            with STORE.lock:
                repo = STORE.repos.get(key)
                if repo is None:
                    return self._send(404, {"error": "not found"}, {"X-Error-Code": "RepoNotFound"})
                for line in body.decode().splitlines():
                    op = json.loads(line)
                    if op["key"] == "file":
                        repo["files"][op["value"]["path"]] = base64.b64decode(op["value"]["content"])
                    elif op["key"] == "deletedFile":
                        repo["files"].pop(op["value"]["path"], None)
                repo["sha"] = secrets.token_hex(20)
            prefix = "" if parts[2] == "models" else f"{parts[2]}/"
            return self._send(
                200,
                {
                    "commitOid": repo["sha"],
                    "pullRequestUrl": None,
                    "commitUrl": f"{self._base()}/{prefix}{parts[3]}/{parts[4]}/commit/{repo['sha']}",
                },
            )
        return self._send(404, {"error": "unknown route"}, {"X-Error-Code": "RepoNotFound"})

    def do_GET(self, head: bool = False) -> None:
        self._auth()
        path = urlsplit(self.path).path
        parts = [unquote(p) for p in path.split("/")]
        if len(parts) >= 5 and parts[1] == "api" and parts[2] in ("models", "datasets", "spaces"):
            repo = STORE.repos.get("/".join(parts[2:5]))
            if repo is None:
                return self._send(404, {"error": "not found"}, {"X-Error-Code": "RepoNotFound"}, head)
            return self._send(
                200,
                {
                    "id": f"{parts[3]}/{parts[4]}",
                    "sha": repo["sha"],
                    "tags": [],
                    "private": False,
                    "siblings": [{"rfilename": f} for f in repo["files"]],
                },
                head=head,
            )
        # /{pfx}{ns}/{name}/resolve/{rev}/{file}
        kind = parts[1] if parts[1] in ("spaces", "datasets") else "models"
        rest = parts[2:] if kind != "models" else parts[1:]
        if len(rest) >= 5 and rest[2] == "resolve":
            repo = STORE.repos.get(f"{kind}/{rest[0]}/{rest[1]}")
            if repo is None:
                return self._send(404, {"error": "repo"}, {"X-Error-Code": "RepoNotFound"}, head)
            if rest[3] != "main":
                return self._send(404, {"error": "revision"}, {"X-Error-Code": "RevisionNotFound"}, head)
            data = repo["files"].get("/".join(rest[4:]))
            if data is None:
                return self._send(
                    404,
                    {"error": "file"},
                    {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo["sha"]},
                    head,
                )
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            return self._send(200, data, {"X-Repo-Commit": repo["sha"], "ETag": f'"{etag}"'}, head)
        return self._send(404, {"error": "unknown route"}, {"X-Error-Code": "RepoNotFound"}, head)

    def do_HEAD(self) -> None:
        self.do_GET(head=True)


def serve(port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    srv = serve()
    with open(sys.argv[1], "w") as f:
        f.write(str(srv.server_address[1]))
    threading.Event().wait()

"""A tiny stand-in for the Hugging Face Hub's file API, served over real HTTP on 127.0.0.1.

It implements what ``huggingface_hub.snapshot_download`` uses: the revision info endpoint
(``/api/{models|kernels}/{repo}/revision/{rev}``) and ``/{prefix}{repo}/resolve/{rev}/{file}``
with HEAD and GET (ranged GET too, for resumed downloads). Gated repositories answer 401
without the right Bearer token. Every request is recorded for the test to inspect.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

PREFIX = {"model": "", "kernel": "kernels/"}
API = {"model": "models", "kernel": "kernels"}


@dataclass
class Repo:
    files: dict[str, bytes]
    branches: tuple[str, ...] = ("main",)
    gated_token: str | None = None

    @property
    def sha(self) -> str:
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + self.files[name])
        return digest.hexdigest()


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    range: str | None = None


@dataclass
class FakeHub:
    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    cut_off: dict[str, int] = field(default_factory=dict)
    """File name -> how many of its next GETs are cut off half-way (an interrupted download;
    huggingface_hub retries a few times itself, so a large count makes the whole run fail)."""

    def add(self, repo_type: str, repo_id: str, repo: Repo) -> Repo:
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def downloads(self, name: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/" + name)]

    def start(self) -> tuple[str, ThreadingHTTPServer]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                hub._serve(self, head=True)

            def do_GET(self) -> None:
                hub._serve(self, head=False)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", server

    # ---- routing ------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append(Request(h.command, path, h.headers.get("Authorization"), h.headers.get("Range")))
        m = re.fullmatch(r"/api/(models|kernels)/([^/]+/[^/]+)/revision/(.+)", path)
        if m:
            return self._info("model" if m[1] == "models" else "kernel", m[2], m[3], h)
        m = re.fullmatch(r"/api/(models|kernels)/([^/]+/[^/]+)/tree/([^/]+)/?", path)
        if m:
            return self._tree("model" if m[1] == "models" else "kernel", m[2], m[3], h)
        m = re.fullmatch(r"/(kernels/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            return self._file("kernel" if m[1] else "model", m[2], m[3], m[4], h, head)
        self._send(h, 404, b'{"error": "not found"}', {"X-Error-Code": "EntryNotFound"})

    def _repo(self, repo_type: str, repo_id: str, h: BaseHTTPRequestHandler) -> Repo | None:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            self._send(h, 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            return None
        if repo.gated_token and h.headers.get("Authorization") != f"Bearer {repo.gated_token}":
            body = b'{"error": "Access to this model is restricted."}'
            self._send(h, 401, body, {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"})
            return None
        return repo

    def _known_revision(self, repo: Repo, revision: str) -> bool:
        return revision in repo.branches or revision == repo.sha

    def _info(self, repo_type: str, repo_id: str, revision: str, h: BaseHTTPRequestHandler) -> None:
        repo = self._repo(repo_type, repo_id, h)
        if repo is None:
            return
        if not self._known_revision(repo, revision):
            self._send(h, 404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
            return
        info = {
            "id": repo_id,
            "sha": repo.sha,
            "siblings": [{"rfilename": name, "size": len(data)} for name, data in sorted(repo.files.items())],
        }
        self._send(h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"})

    def _tree(self, repo_type: str, repo_id: str, revision: str, h: BaseHTTPRequestHandler) -> None:
        """The recursive listing (one page: no ``Link`` header)."""
        repo = self._repo(repo_type, repo_id, h)
        if repo is None:
            return
        if not self._known_revision(repo, revision):
            self._send(h, 404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
            return
        entries = [
            {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": name}
            for name, data in sorted(repo.files.items())
        ]
        self._send(h, 200, json.dumps(entries).encode(), {"Content-Type": "application/json"})

    def _file(self, repo_type: str, repo_id: str, revision: str, name: str, h: BaseHTTPRequestHandler, head: bool) -> None:
        repo = self._repo(repo_type, repo_id, h)
        if repo is None:
            return
        data = repo.files.get(name)
        if data is None or not self._known_revision(repo, revision):
            self._send(h, 404, b'{"error": "Entry not found"}', {"X-Error-Code": "EntryNotFound"})
            return
        etag = '"' + hashlib.sha1(data).hexdigest() + '"'
        headers = {"ETag": etag, "X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        start = 0
        rng = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        if rng and not head:
            start = int(rng[1])
        body = data[start:]
        if head:
            self._send(h, 200, b"", headers | {"Content-Length": str(len(data))}, head=True)
            return
        if self.cut_off.get(name, 0) > 0:
            # Promise the whole body, send half, drop the connection: an interrupted download.
            self.cut_off[name] -= 1
            h.send_response(200)
            for k, v in (headers | {"Content-Length": str(len(body))}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self._send(h, status, body, headers)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if "Content-Length" not in headers:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

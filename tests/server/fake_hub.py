"""A Hugging Face Hub-compatible HTTP server on loopback that serves one directory as a model repo.

It answers the calls `huggingface_hub` makes for `snapshot_download` when HF_ENDPOINT points
at it (read from huggingface_hub 2.x's `HfApi.repo_info`, `list_repo_tree` and
`get_hf_file_metadata`/`http_get`):

- GET  /api/models/{repo}[/revision/{rev}]      -> {"id", "sha", "siblings"}
- GET  /api/models/{repo}/tree/{rev}?recursive=  -> [{"type": "file", "path", "size", "oid", "lfs"}]
- HEAD /{repo}/resolve/{rev}/{file}             -> X-Repo-Commit, ETag, Content-Length
- GET  /{repo}/resolve/{rev}/{file}             -> the bytes; Range: bytes=N- gives a 206

Files larger than LFS_THRESHOLD (and every *.safetensors) are published as LFS files with their
sha256, the others with their git blob id, like the hub does. Knobs for the tests: `throttle`
(bytes per second for GETs of one file), `corrupt` (serve flipped bytes for a file while
publishing the true hash) and `requests` (every request seen, with its Range header).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from tests.server.loopback_http import loopback_server

LFS_THRESHOLD = 1024 * 1024
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    path: str
    local: Path
    size: int
    git_oid: str
    sha256: str | None


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def _describe(root: Path) -> dict[str, HubFile]:
    files: dict[str, HubFile] = {}
    for local in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = local.relative_to(root).as_posix()
        if rel.startswith("."):
            continue
        data = local.read_bytes()
        lfs = len(data) > LFS_THRESHOLD or rel.endswith(".safetensors")
        sha = hashlib.sha256(data).hexdigest() if lfs else None
        files[rel] = HubFile(rel, local, len(data), _git_blob_id(data), sha)
    return files


@dataclass
class FakeHub:
    repo_id: str
    root: Path
    commit: str = COMMIT
    throttle: dict[str, int] = field(default_factory=dict)  # file -> bytes per second
    corrupt: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    more_repos: dict[str, Path] = field(default_factory=dict)  # e.g. a LoRA adapter's repo

    def __post_init__(self) -> None:
        self.files = _describe(self.root)
        self.repos = {self.repo_id: self.files}
        self.repos.update({repo: _describe(root) for repo, root in self.more_repos.items()})

    def tree(self, repo: str) -> list[dict[str, Any]]:
        entries = []
        for f in self.repos[repo].values():
            entry: dict[str, Any] = {
                "type": "file",
                "path": f.path,
                "size": f.size,
                "oid": f.git_oid,
            }
            if f.sha256:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries.append(entry)
        return entries

    def bytes_served(self, path: str) -> int:
        return sum(r["sent"] for r in self.requests if r["file"] == path and r["method"] == "GET")


def _handler(hub: FakeHub) -> type[http.server.BaseHTTPRequestHandler]:
    repo = "(?P<repo>[^/]+/[^/]+)"
    revision_path = re.compile(rf"^/api/models/{repo}(?:/revision/([^/]+))?$")
    tree_path = re.compile(rf"^/api/models/{repo}/tree/([^/]+)$")
    resolve_path = re.compile(rf"^/{repo}/resolve/([^/]+)/(.+)$")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:  # quiet test output
            pass

        def _json(self, body: Any, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Repo-Commit", hub.commit)
            self.end_headers()
            self.wfile.write(data)

        def _revision_ok(self, rev: str) -> bool:
            if unquote(rev) in ("main", hub.commit):
                return True
            self.send_response(404)
            self.send_header("X-Error-Code", "RevisionNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, *, body: bool) -> None:
            path = urlparse(self.path).path
            record: dict[str, Any] = {
                "method": self.command,
                "path": path,
                "range": self.headers.get("Range"),
                "file": None,
                "sent": 0,
            }
            hub.requests.append(record)
            match = revision_path.match(path) or tree_path.match(path) or resolve_path.match(path)
            if not match or match.group("repo") not in hub.repos:
                self._json({"error": "Repository not found"}, 404)
                return
            repo_id, files = match.group("repo"), hub.repos[match.group("repo")]
            if match.re is revision_path:
                if self._revision_ok(match.group(2) or "main"):
                    siblings = [{"rfilename": name} for name in files]
                    self._json({"id": repo_id, "sha": hub.commit, "siblings": siblings})
                return
            if match.re is tree_path:
                if self._revision_ok(match.group(2)):
                    self._json(hub.tree(repo_id))
                return
            if not self._revision_ok(match.group(2)):
                return
            name = unquote(match.group(3))
            record["file"] = name
            entry = files.get(name)
            if entry is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            if range_header := self.headers.get("Range"):
                start = int(re.match(r"bytes=(\d+)-", range_header).group(1))  # type: ignore[union-attr]
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", hub.commit)
            self.send_header("ETag", f'"{entry.sha256 or entry.git_oid}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(entry.size - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{entry.size - 1}/{entry.size}")
            self.end_headers()
            if body:
                self._send_file(entry, start, record)

        def _send_file(self, entry: HubFile, start: int, record: dict[str, Any]) -> None:
            rate = hub.throttle.get(entry.path)
            chunk_size = 64 * 1024
            with entry.local.open("rb") as f:
                f.seek(start)
                while chunk := f.read(chunk_size):
                    if entry.path in hub.corrupt:
                        chunk = bytes(b ^ 0xFF for b in chunk[:16]) + chunk[16:]
                    try:
                        self.wfile.write(chunk)
                    except OSError:  # the client went away (an interrupted download)
                        return
                    record["sent"] += len(chunk)
                    if rate:
                        time.sleep(len(chunk) / rate)

    return Handler


@contextmanager
def serve_hub(hub: FakeHub) -> Iterator[FakeHub]:
    with loopback_server(_handler(hub)) as url:
        hub.url = url
        yield hub

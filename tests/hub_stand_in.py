"""A stand-in for the Hugging Face Hub on loopback, so tests run the real ``huggingface_hub`` calls.

    >>> with HubStandIn(tmp_path / "hub") as hub:          # http://127.0.0.1:<free port>
    ...     # point huggingface_hub at hub.url (HF_ENDPOINT, see tests/test_hub.py's fixture)
    ...     model.push_to_hub("user/name"); ComoSVC.from_pretrained("user/name")
    ...     hub.files("user/name")                          # {"config.json": b"...", ...}

Only what the client (written against huggingface_hub 2.4) asks for when downloading a model
and pushing one with plain (non-LFS, non-Xet) uploads:

==========================================================  =========================================
``GET  /api/models/{repo}[/revision/{rev}]``                 repo_info / model_info: ``id``, ``sha``, ``siblings``
``GET  /api/models/{repo}/tree/{rev}``                       list_repo_tree (snapshot_download): every file
``HEAD|GET /{repo}/resolve/{rev}/{path}``                    hf_hub_download: ``ETag``, ``X-Repo-Commit``, ``Content-Length``
``POST /api/repos/create``                                   create_repo (409 with the url when it exists)
``POST /api/validate-yaml``                                  create_commit's README.md check: no errors
``POST /api/models/{repo}/preupload/{rev}``                  upload mode: "regular" for every file
``POST /api/models/{repo}/commit/{rev}``                     the NDJSON commit: base64 files, deletions
==========================================================  =========================================

Errors carry the ``X-Error-Code`` the client maps to its exceptions (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``). It never sends Xet headers, so the client downloads
over plain HTTP, and it answers "regular" to every preupload, so uploads (create_commit, or
upload_folder's pipelined path when hf_xet is installed) send every file inline in the commit.
Writes need an ``Authorization`` header (any token). Repositories live in ``root/<owner>/<name>/``,
one revision: ``main`` (or the current commit id). Requests the stand-in does not know are
answered 501 and kept in :attr:`HubStandIn.unhandled`, so a test can check none was made.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
REV = r"(?P<rev>[^/]+)"
ROUTES = [  # (method, pattern of the unquoted path, handler name)
    ("GET", rf"/api/models/{REPO}(?:/revision/{REV})?", "model_info"),
    ("GET", rf"/api/models/{REPO}/tree/{REV}(?:/.*)?", "tree"),
    ("HEAD", rf"/{REPO}/resolve/{REV}/(?P<path>.+)", "resolve"),
    ("GET", rf"/{REPO}/resolve/{REV}/(?P<path>.+)", "resolve"),
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("POST", rf"/api/models/{REPO}/preupload/{REV}", "preupload"),
    ("POST", rf"/api/models/{REPO}/commit/{REV}", "commit"),
]


def git_blob_id(content: bytes) -> str:
    """The git object id of a file, which the Hub serves as a regular file's ETag and tree ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubStandIn:
    """A threaded HTTP server on 127.0.0.1 (free port) serving the repositories under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.commits: dict[str, str] = {}  # repo id -> head commit id
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.unhandled: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.hub = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)  # quick shutdown

    def __enter__(self) -> "HubStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    # -------------------------------------------------------------- the store

    def folder(self, repo_id: str) -> Path:
        return self.root / repo_id

    def files(self, repo_id: str) -> dict[str, bytes]:
        """``{path in repo: content}`` of a repository (``{}`` when it does not exist)."""
        folder = self.folder(repo_id)
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    def add_repo(self, repo_id: str, folder: str | Path) -> str:
        """Seed ``repo_id`` with the files of a local folder, as one commit (no HTTP); returns its id."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}
        return self._commit(repo_id, files, deleted=[])

    def _commit(self, repo_id: str, files: dict[str, bytes], deleted: list[str]) -> str:
        with self.lock:
            folder = self.folder(repo_id)
            digest = hashlib.sha1(self.commits.get(repo_id, repo_id).encode())
            for path in deleted:
                (folder / path).unlink(missing_ok=True)
                digest.update(b"-" + path.encode())
            for path, content in files.items():
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
                (folder / path).write_bytes(content)
                digest.update(path.encode() + git_blob_id(content).encode())
            self.commits[repo_id] = digest.hexdigest()
            return self.commits[repo_id]


class _Handler(BaseHTTPRequestHandler):
    server_version = "HubStandIn"

    def log_message(self, *args) -> None:  # quiet: the requests are in hub.requests
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        hub: HubStandIn = self.server.hub
        path = unquote(urlsplit(self.path).path)
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        hub.requests.append((method, path))
        for route_method, pattern, name in ROUTES:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                if method == "POST" and name != "validate_yaml" and not self.headers.get("Authorization"):
                    return self._send(401, {"error": "Invalid username or password."})
                return getattr(self, name)(hub, **match.groupdict())
        hub.unhandled.append((method, path))
        self._send(501, {"error": f"the Hub stand-in does not implement {method} {path}"})

    def _send(self, status: int, payload=None, headers: dict[str, str] | None = None, body: bytes | None = None) -> None:
        if body is None:
            body = json.dumps(payload).encode() if payload is not None else b""
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for key, value in {**(headers or {}), "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _head(self, hub: HubStandIn, repo: str, rev: str | None) -> str | None:
        """The commit id of ``rev`` (after answering 404 when the repo or revision is unknown)."""
        if repo not in hub.commits:
            self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        if rev not in (None, "main", hub.commits[repo]):
            self._send(404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
            return None
        return hub.commits[repo]

    # -------------------------------------------------------------- downloads

    def model_info(self, hub: HubStandIn, repo: str, rev: str | None = None) -> None:
        if sha := self._head(hub, repo, rev):
            siblings = [{"rfilename": name} for name in hub.files(repo)]
            self._send(200, {"id": repo, "modelId": repo, "sha": sha, "private": False, "siblings": siblings})

    def tree(self, hub: HubStandIn, repo: str, rev: str) -> None:
        if self._head(hub, repo, rev):
            files = hub.files(repo).items()
            self._send(200, [{"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)} for name, data in files])

    def resolve(self, hub: HubStandIn, repo: str, rev: str, path: str) -> None:
        if not (sha := self._head(hub, repo, rev)):
            return
        content = hub.files(repo).get(path)
        if content is None:
            return self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha})
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{git_blob_id(content)}"', "X-Repo-Commit": sha}
        self._send(200, headers=headers, body=content)

    # -------------------------------------------------------------- uploads

    def create_repo(self, hub: HubStandIn) -> None:
        request = json.loads(self.body)
        repo = f"{request['organization']}/{request['name']}"
        url = {"url": f"{hub.url}/{repo}"}
        if request.get("type", "model") != "model":
            return self._send(400, {"error": "the Hub stand-in holds model repos only"})
        if repo in hub.commits:
            return self._send(409, {"error": "You already created this model repo", **url})
        hub.folder(repo).mkdir(parents=True, exist_ok=True)
        hub._commit(repo, {}, deleted=[])
        self._send(200, url)

    def validate_yaml(self, hub: HubStandIn) -> None:
        self._send(200, {"errors": [], "warnings": []})

    def preupload(self, hub: HubStandIn, repo: str, rev: str) -> None:
        if self._head(hub, repo, rev):
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in json.loads(self.body)["files"]]
            self._send(200, {"files": files, "commitOid": hub.commits[repo]})

    def commit(self, hub: HubStandIn, repo: str, rev: str) -> None:
        if not self._head(hub, repo, rev):
            return
        files, deleted = {}, []
        for line in self.body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "file" and value.get("encoding") == "base64":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                deleted.append(value["path"])
            elif key != "header":  # lfsFile, deletedFolder: never answered "lfs" by preupload, not needed
                return self._send(400, {"error": f"the Hub stand-in does not take {key!r} commit lines"})
        sha = hub._commit(repo, files, deleted)
        self._send(200, {"commitUrl": f"{hub.url}/{repo}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})

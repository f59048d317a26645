"""A Hugging Face Hub test double: dataset repositories served over HTTP on 127.0.0.1.

It implements only the endpoints that ``huggingface_hub`` (2.x, Xet disabled) and
``datasets`` call to publish and load a Parquet dataset: repository creation and
info, branches, ``preupload``, the Git LFS batch API and the upload URL it hands
out, the NDJSON ``commit``, ``validate-yaml``, and the read side (``tree``,
``paths-info``, ``resolve`` with HTTP range requests). Requests to any other
path get 404 and are recorded in ``HubServer.unhandled``.

Repositories live in memory as commits: each commit maps paths to stored files
and has a sha1 id, and branches point at commits. Tokens map to user names, and
a user may write only to repositories in its own namespace. ``fail`` injects
HTTP errors into chosen endpoints to test what a client does when the Hub fails.

The clients read ``HF_ENDPOINT`` when they are imported, so tests run them in a
subprocess with the environment from ``client_environment``.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
)
# A stand-in for the .gitattributes that the Hub writes into a new repository.
# The double stores files matching these patterns with LFS, and also any file
# with a NUL byte in its first 512 bytes or of LFS_MIN_SIZE bytes or more.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in ("*.parquet", "*.arrow", "*.png", "*.jpg", "*.gz", "*.zip", "*.npy")
)
LFS_MIN_SIZE = 10 * 1024 * 1024


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_patterns(gitattributes: bytes) -> list[str]:
    return [
        line.split()[0]
        for line in gitattributes.decode().splitlines()
        if "filter=lfs" in line
    ]


def is_lfs(path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
    """Return whether the double stores ``path`` with LFS."""
    name = path.rsplit("/", 1)[-1]
    return (
        any(fnmatch.fnmatch(name, p) for p in patterns)
        or b"\0" in sample
        or size >= LFS_MIN_SIZE
    )


@dataclass
class StoredFile:
    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def pointer(self) -> bytes:
        return LFS_POINTER.format(oid=self.sha256, size=len(self.content)).encode()

    @property
    def blob_id(self) -> str:
        """The git blob id: of the LFS pointer for an LFS file, as git stores it."""
        return git_blob_id(self.pointer if self.lfs else self.content)


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    files: dict[str, StoredFile]
    date: str


@dataclass
class Repository:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)

    def head(self, revision: str) -> Commit | None:
        """Return the commit that a branch name or a full commit id points at."""
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)

    def history(self, branch: str = "main") -> list[str]:
        """Return the commit ids of ``branch``, newest first."""
        oids = []
        commit = self.head(branch)
        while commit is not None:
            oids.append(commit.oid)
            commit = self.commits.get(commit.parent) if commit.parent else None
        return oids

    def add_commit(
        self, branch: str, title: str, files: dict[str, StoredFile]
    ) -> Commit:
        parent = self.branches.get(branch)
        # The clients parse only this form, with milliseconds and a Z.
        date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        digest = hashlib.sha1(f"{parent}\n{title}\n{date}\n".encode())
        for path in sorted(files):
            digest.update(f"{path} {files[path].blob_id}\n".encode())
        commit = Commit(digest.hexdigest(), parent, title, dict(files), date)
        self.commits[commit.oid] = commit
        self.branches[branch] = commit.oid
        return commit


@dataclass
class Failure:
    """An injected error. The first ``skip`` requests to ``endpoint`` pass, then
    the next ``times`` requests (all of them when None) get ``status``."""

    endpoint: str
    status: int
    skip: int = 0
    times: int | None = None
    message: str = "Injected failure"
    seen: int = 0
    fired: int = 0


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class HubServer:
    """The Hub double. Use as a context manager: it serves on 127.0.0.1 on a
    free port from ``__enter__`` to ``__exit__``."""

    def __init__(self, tokens: dict[str, str] | None = None):
        self.tokens = dict(tokens or {})  # token -> user name
        self.repos: dict[str, Repository] = {}
        self.failures: list[Failure] = []
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.authorizations: list[str] = []  # Authorization headers received
        self.unhandled: list[tuple[str, str]] = []
        self.commits_created = 0  # by the commit endpoint, not by repo creation
        self.lock = threading.RLock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def create_repository(
        self, repo_id: str, files: dict[str, bytes] | None = None, private: bool = False
    ) -> Repository:
        """Create a repository with an initial .gitattributes commit, as the Hub
        does, then commit ``files`` to main in a second commit."""
        with self.lock:
            repo = Repository(repo_id, private=private)
            repo.add_commit(
                "main",
                "initial commit",
                {".gitattributes": StoredFile(DEFAULT_GITATTRIBUTES.encode(), False)},
            )
            if files:
                patterns = lfs_patterns(DEFAULT_GITATTRIBUTES.encode())
                stored = {
                    path: StoredFile(
                        content, is_lfs(path, len(content), content[:512], patterns)
                    )
                    for path, content in files.items()
                }
                for item in stored.values():
                    if item.lfs:
                        repo.lfs_objects[item.sha256] = item.content
                repo.add_commit(
                    "main", "add files", {**repo.head("main").files, **stored}
                )
            self.repos[repo_id] = repo
            return repo

    def fail(self, endpoint: str, status: int, **options) -> Failure:
        """Inject an error into ``endpoint``, a route name of ``HubHandler.ROUTES``.
        See Failure for the options."""
        failure = Failure(endpoint, status, **options)
        with self.lock:
            self.failures.append(failure)
        return failure

    def snapshot(
        self, repo_id: str, branch: str = "main"
    ) -> tuple[str, dict[str, bytes]]:
        """Return the head commit id and the files of ``branch``."""
        with self.lock:
            commit = self.repos[repo_id].head(branch)
            return commit.oid, {p: f.content for p, f in commit.files.items()}

    def check_failure(self, endpoint: str) -> None:
        with self.lock:
            for failure in self.failures:
                if failure.endpoint != endpoint:
                    continue
                failure.seen += 1
                if failure.seen <= failure.skip:
                    continue
                if failure.times is not None and failure.fired >= failure.times:
                    continue
                failure.fired += 1
                raise HubError(failure.status, failure.message)

    # -- authorization --------------------------------------------------------

    def user_of(self, authorization: str | None) -> str | None:
        """Return the user a request acts as, None when anonymous."""
        if not authorization:
            return None
        token = authorization.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def readable_repo(self, repo_id: str, user: str | None) -> Repository:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and user != repo_id.split("/")[0]):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def writable_repo(self, repo_id: str, user: str | None) -> Repository:
        if user is None:
            raise HubError(401, "You must be authenticated to write to a repository")
        repo = self.readable_repo(repo_id, user)
        if user != repo_id.split("/")[0]:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def commit_at(self, repo: Repository, revision: str) -> Commit:
        commit = repo.head(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit


def make_handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(HubHandler):
        hub = server

    return Handler


REPO = r"/(?P<repo>[\w.-]+/[\w.-]+)"
REV = r"(?P<rev>[^/]+)"


class HubHandler(BaseHTTPRequestHandler):
    """Routes requests to the ``HubServer`` in ``hub``."""

    protocol_version = "HTTP/1.1"
    hub: HubServer

    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("POST", "create", r"/api/repos/create"),
        ("POST", "validate_yaml", r"/api/validate-yaml"),
        ("GET", "info", rf"/api/datasets{REPO}(?:/revision/{REV})?"),
        ("POST", "branch", rf"/api/datasets{REPO}/branch/{REV}"),
        ("POST", "preupload", rf"/api/datasets{REPO}/preupload/{REV}"),
        ("POST", "lfs_batch", rf"/datasets{REPO}\.git/info/lfs/objects/batch"),
        ("PUT", "lfs_upload", rf"/lfs-upload{REPO}/(?P<oid>[0-9a-f]{{64}})"),
        ("POST", "commit", rf"/api/datasets{REPO}/commit/{REV}"),
        ("GET", "tree", rf"/api/datasets{REPO}/tree/{REV}(?:/(?P<path>.+))?"),
        ("POST", "paths_info", rf"/api/datasets{REPO}/paths-info/{REV}"),
        ("GET", "resolve", rf"/datasets{REPO}/resolve/{REV}/(?P<path>.+)"),
        ("HEAD", "resolve", rf"/datasets{REPO}/resolve/{REV}/(?P<path>.+)"),
    ]

    def log_message(self, format: str, *args) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_HEAD(self) -> None:
        self.dispatch("HEAD")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        body = self.read_body()
        hub = self.hub
        with hub.lock:
            hub.requests.append((method, url.path))
            if self.headers.get("Authorization"):
                hub.authorizations.append(self.headers["Authorization"])
        for route_method, name, pattern in self.ROUTES:
            match = re.fullmatch(pattern, url.path)
            if route_method != method or match is None:
                continue
            params = {
                k: unquote(v) for k, v in match.groupdict().items() if v is not None
            }
            try:
                hub.check_failure(name)
                user = (
                    None
                    if name == "lfs_upload"
                    else hub.user_of(self.headers.get("Authorization"))
                )
                with hub.lock:
                    getattr(self, f"handle_{name}")(user=user, body=body, **params)
            except HubError as error:
                self.send_error_json(error)
            return
        with hub.lock:
            hub.unhandled.append((method, url.path))
        self.send_error_json(HubError(404, f"No route for {method} {url.path}"))

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- responses ------------------------------------------------------------

    def send_bytes(
        self, status: int, content: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    def send_json(self, data, status: int = 200) -> None:
        self.send_bytes(
            status, json.dumps(data).encode(), {"Content-Type": "application/json"}
        )

    def send_error_json(self, error: HubError) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": error.message}
        if error.code:
            headers["X-Error-Code"] = error.code
        self.send_bytes(
            error.status, json.dumps({"error": error.message}).encode(), headers
        )

    # -- write side -----------------------------------------------------------

    def handle_create(self, user, body):
        payload = json.loads(body)
        if user is None:
            raise HubError(401, "You must be authenticated to create a repository")
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.hub.endpoint}/datasets/{repo_id}"
        if namespace != user:
            raise HubError(
                403, f"You don't have the rights to create a dataset under {namespace}"
            )
        if payload.get("type") != "dataset":
            raise HubError(400, "This Hub double serves dataset repositories only")
        if repo_id in self.hub.repos:
            self.send_json(
                {"error": "You already created this dataset repo", "url": url}, 409
            )
            return
        self.hub.create_repository(
            repo_id, private=payload.get("visibility") == "private"
        )
        self.send_json({"url": url, "name": repo_id, "id": repo_id})

    def handle_branch(self, user, body, repo, rev):
        repository = self.hub.writable_repo(repo, user)
        if rev in repository.branches:
            raise HubError(409, f"Branch {rev} already exists")
        start = (json.loads(body) if body else {}).get("startingPoint") or "main"
        repository.branches[rev] = self.hub.commit_at(repository, start).oid
        self.send_json({})

    def handle_preupload(self, user, body, repo, rev):
        repository = self.hub.writable_repo(repo, user)
        commit = self.hub.commit_at(repository, rev)
        gitattributes = commit.files.get(".gitattributes", StoredFile(b"", False))
        patterns = lfs_patterns(gitattributes.content)
        answers = []
        for item in json.loads(body)["files"]:
            path = item["path"]
            lfs = is_lfs(path, item["size"], base64.b64decode(item["sample"]), patterns)
            existing = commit.files.get(path)
            # The client compares this with its own id: sha256 for LFS files,
            # the git blob id otherwise.
            oid = None
            if existing is not None:
                oid = existing.sha256 if existing.lfs else git_blob_id(existing.content)
            answers.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self.send_json({"files": answers, "commitOid": commit.oid})

    def handle_lfs_batch(self, user, body, repo):
        repository = self.hub.writable_repo(repo, user)
        objects = []
        for item in json.loads(body)["objects"]:
            answer = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in repository.lfs_objects:
                href = f"{self.hub.endpoint}/lfs-upload/{repo}/{item['oid']}"
                answer["actions"] = {"upload": {"href": href}}
            objects.append(answer)
        self.send_bytes(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def handle_lfs_upload(self, user, body, repo, oid):
        if repo not in self.hub.repos:
            raise HubError(404, f"No repository {repo} to upload to")
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match sha256 {oid}")
        self.hub.repos[repo].lfs_objects[oid] = body
        self.send_bytes(200, b"")

    def handle_commit(self, user, body, repo, rev):
        repository = self.hub.writable_repo(repo, user)
        commit = self.hub.commit_at(repository, rev)
        if rev not in repository.branches:
            raise HubError(400, f"Cannot commit to {rev}: not a branch")
        lines = [
            json.loads(line) for line in body.decode().splitlines() if line.strip()
        ]
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, commit.oid):
            raise HubError(
                412, "A commit has happened since. Please refresh and try again."
            )
        files = dict(commit.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = StoredFile(
                    base64.b64decode(value["content"]), False
                )
            elif key == "lfsFile":
                content = repository.lfs_objects.get(value["oid"])
                if content is None:
                    raise HubError(
                        422,
                        f"LFS object of {value['path']} was not uploaded",
                    )
                files[value["path"]] = StoredFile(content, True)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(
                        404, "A file with this name doesn't exist", "EntryNotFound"
                    )
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: f for p, f in files.items() if not p.startswith(prefix)}
            else:
                raise HubError(400, f"Unknown commit operation {key}")
        new = repository.add_commit(rev, header["summary"], files)
        self.hub.commits_created += 1
        self.send_json(
            {
                "success": True,
                "commitOid": new.oid,
                "commitUrl": f"{self.hub.endpoint}/datasets/{repo}/commit/{new.oid}",
                "pullRequestUrl": None,
            }
        )

    def handle_validate_yaml(self, user, body):
        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---", content, re.DOTALL)
        try:
            if match:
                yaml.safe_load(match.group(1))
        except yaml.YAMLError as error:
            self.send_json({"errors": [{"message": str(error)}], "warnings": []}, 400)
            return
        self.send_json({"errors": [], "warnings": []})

    # -- read side ------------------------------------------------------------

    def handle_info(self, user, body, repo, rev="main"):
        repository = self.hub.readable_repo(repo, user)
        commit = self.hub.commit_at(repository, rev)
        self.send_json(
            {
                "id": repo,
                "author": repo.split("/")[0],
                "sha": commit.oid,
                "private": repository.private,
                "disabled": False,
                "gated": False,
                "lastModified": commit.date,
                "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            }
        )

    def entries(self, commit: Commit, expand: bool) -> dict[str, dict]:
        """Return the tree entries of every file and folder of ``commit``."""
        last_commit = {"id": commit.oid, "title": commit.title, "date": commit.date}
        entries: dict[str, dict] = {}
        for path, stored in commit.files.items():
            entry = {
                "type": "file",
                "oid": stored.blob_id,
                "size": len(stored.content),
                "path": path,
            }
            if stored.lfs:
                entry["lfs"] = {
                    "oid": stored.sha256,
                    "size": len(stored.content),
                    "pointerSize": len(stored.pointer),
                }
            entries[path] = entry
            parts = path.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                entries[folder] = {
                    "type": "directory",
                    "oid": git_blob_id(folder.encode()),
                    "size": 0,
                    "path": folder,
                }
        if expand:
            for entry in entries.values():
                entry["lastCommit"] = last_commit
        return entries

    def handle_tree(self, user, body, repo, rev, path=""):
        commit = self.hub.commit_at(self.hub.readable_repo(repo, user), rev)
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
        expand = self.query.get("expand", ["false"])[0].lower() == "true"
        entries = self.entries(commit, expand)
        path = path.strip("/")
        if path and entries.get(path, {}).get("type") != "directory":
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        prefix = f"{path}/" if path else ""
        listed = [
            entry
            for name, entry in sorted(entries.items())
            if name.startswith(prefix) and (recursive or "/" not in name[len(prefix) :])
        ]
        self.send_json(listed)

    def handle_paths_info(self, user, body, repo, rev):
        commit = self.hub.commit_at(self.hub.readable_repo(repo, user), rev)
        form = parse_qs(body.decode())
        expand = form.get("expand", ["false"])[0].lower() == "true"
        entries = self.entries(commit, expand)
        paths = [p.strip("/") for p in form.get("paths", [])]
        self.send_json([entries[p] for p in paths if p in entries])

    def handle_resolve(self, user, body, repo, rev, path):
        commit = self.hub.commit_at(self.hub.readable_repo(repo, user), rev)
        stored = commit.files.get(path)
        if stored is None:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        content = stored.content
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{stored.blob_id}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{stored.sha256}"'
            headers["X-Linked-Size"] = str(len(content))
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match is None:
            self.send_bytes(200, content, headers)
            return
        start_text, end_text = match.groups()
        if start_text:
            start = int(start_text)
            end = min(int(end_text), len(content) - 1) if end_text else len(content) - 1
        else:  # suffix range: the last N bytes
            start, end = max(len(content) - int(end_text), 0), len(content) - 1
        if start >= len(content):
            headers["Content-Range"] = f"bytes */{len(content)}"
            self.send_bytes(416, b"", headers)
            return
        headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        self.send_bytes(206, content[start : end + 1], headers)


def refused_port() -> socket.socket:
    """Return a bound, non-listening socket: connecting to its port is refused.

    ``client_environment`` routes proxied traffic there, so a client request
    to any host but 127.0.0.1 fails at once instead of leaving the machine.
    Keep the socket open while clients run.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def client_environment(
    server: HubServer, home: Path, blocked: socket.socket, token: str | None = None
) -> dict[str, str]:
    """Return the environment for a subprocess that runs huggingface_hub and
    datasets against ``server``: caches under ``home``, Xet, telemetry and
    progress bars off, HF_TOKEN set to ``token`` (or unset), and every host
    but 127.0.0.1 sent to the refused port of ``blocked``."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "HUGGINGFACE_")) and "PROXY" not in key.upper()
    }
    dead_proxy = f"http://127.0.0.1:{blocked.getsockname()[1]}"
    environment.update(
        {
            "HF_ENDPOINT": server.endpoint,
            "HF_HOME": str(home / "hf_home"),
            "HF_DATASETS_CACHE": str(home / "datasets_cache"),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
            # datasets imports torch, when installed, for every streaming dataset:
            # several seconds that these tests do not need.
            "USE_TORCH": "0",
            "HTTP_PROXY": dead_proxy,
            "HTTPS_PROXY": dead_proxy,
            "ALL_PROXY": dead_proxy,
            "NO_PROXY": "127.0.0.1",
        }
    )
    if token is not None:
        environment["HF_TOKEN"] = token
    return environment

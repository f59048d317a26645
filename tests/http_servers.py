"""A threaded HTTP server on 127.0.0.1 for tests, with a behaviour per path.

    with LocalServer() as server:
        server.route("/good/notMNIST_small.tar.gz", ServeBytes(data))
        server.route("/flaky/notMNIST_small.tar.gz", DropAfter(data, 1000))
        fetch_tarball(tarball, mirrors=[server.url("/flaky/"), server.url("/good/")])
        assert server.requests[1].header("Range") == "bytes=1000-"

The server binds port 0, so tests get a free port, and records every request
it receives. A path without a route gets 404. urllib sends requests through
the proxies named in the environment, so tests that use this server should set
``no_proxy=127.0.0.1``.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from typing import Self

GZIP_CONTENT_TYPE = "application/gzip"
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Moved</title></head>"
    b"<body><p>This file has moved. Please sign in to continue.</p></body></html>\n"
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, with its headers."""

    method: str
    path: str
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        """Return the value of header ``name`` (any case), or None if absent."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


class Behaviour(Protocol):
    """The response the server sends to requests for one path."""

    def respond(self, handler: BaseHTTPRequestHandler, request_index: int) -> None:
        """Write the whole response for the ``request_index``-th request (from 0)
        to this path."""


def _requested_range(
    handler: BaseHTTPRequestHandler, length: int
) -> tuple[int, int] | None:
    """Return the (first, last) byte of a "Range: bytes=first-[last]" header, or
    None when the request has no Range header of that form."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", handler.headers.get("Range", ""))
    if match is None:
        return None
    first = int(match[1])
    last = int(match[2]) if match[2] else length - 1
    return first, min(last, length - 1)


def _send_body_headers(
    handler: BaseHTTPRequestHandler,
    data: bytes,
    honour_range: bool,
    send_length: bool,
    content_type: str,
) -> bytes | None:
    """Send the status line and headers for ``data`` and return the body to
    send, or None when a 416 response has been sent in full."""
    requested = _requested_range(handler, len(data)) if honour_range else None
    if requested is not None and requested[0] >= len(data):
        handler.send_response(416)
        handler.send_header("Content-Range", f"bytes */{len(data)}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return None

    if requested is None:
        body = data
        handler.send_response(200)
    else:
        first, last = requested
        body = data[first : last + 1]
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
    handler.send_header("Content-Type", content_type)
    if send_length:
        handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Accept-Ranges", "bytes" if honour_range else "none")
    handler.end_headers()
    return body


@dataclass
class ServeBytes:
    """Serve ``data`` like a static file server.

    With ``honour_range``, a Range request gets 206 and the requested bytes, or
    416 when it starts past the end. Without it, every request gets 200 and the
    whole body. Without ``send_length``, the body ends when the connection
    closes, as HTTP/1.0 allows. ``delay`` seconds pass before the response.
    """

    data: bytes
    honour_range: bool = True
    send_length: bool = True
    content_type: str = GZIP_CONTENT_TYPE
    delay: float = 0.0

    def respond(self, handler: BaseHTTPRequestHandler, request_index: int) -> None:
        if self.delay:
            time.sleep(self.delay)
        body = _send_body_headers(
            handler, self.data, self.honour_range, self.send_length, self.content_type
        )
        if body:
            handler.wfile.write(body)


@dataclass
class DropAfter:
    """Announce the whole response, send ``num_bytes`` of its body and close the
    connection, for the first ``times`` requests. Later requests get ServeBytes."""

    data: bytes
    num_bytes: int
    times: int = 1

    def respond(self, handler: BaseHTTPRequestHandler, request_index: int) -> None:
        body = _send_body_headers(
            handler,
            self.data,
            honour_range=True,
            send_length=True,
            content_type=GZIP_CONTENT_TYPE,
        )
        if not body:
            return
        if request_index >= self.times:
            handler.wfile.write(body)
            return
        handler.wfile.write(body[: self.num_bytes])
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)


@dataclass
class ServeHTML:
    """Respond with an HTML page and ``status``, as a captive portal or a moved
    file's landing page does. The Content-Type is ``content_type``."""

    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    page: bytes = HTML_PAGE

    def respond(self, handler: BaseHTTPRequestHandler, request_index: int) -> None:
        handler.send_response(self.status)
        handler.send_header("Content-Type", self.content_type)
        handler.send_header("Content-Length", str(len(self.page)))
        handler.end_headers()
        handler.wfile.write(self.page)


@dataclass
class ServeStatus:
    """Respond with HTTP error ``status`` (404, 500, ...) and a short text body."""

    status: int

    def respond(self, handler: BaseHTTPRequestHandler, request_index: int) -> None:
        handler.send_error(self.status)


@dataclass
class Stall:
    """Wait ``seconds``, or until the server stops, before responding with 503,
    so clients with a shorter timeout time out."""

    seconds: float
    stopped: threading.Event = field(default_factory=threading.Event)

    def respond(self, handler: BaseHTTPRequestHandler, request_index: int) -> None:
        self.stopped.wait(self.seconds)
        with contextlib.suppress(OSError):
            handler.send_error(503)


def corrupt(data: bytes) -> bytes:
    """Return ``data`` with the same length and gzip magic but other bytes after
    the first ten, so that only a checksum distinguishes the two."""
    if len(data) <= 10:
        raise ValueError(f"corrupt() needs more than 10 bytes, got {len(data)}")
    return data[:10] + bytes(byte ^ 0xFF for byte in data[10:])


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        local = self.server.local
        behaviour, request_index = local._record(self)
        if behaviour is None:
            self.send_error(404)
            return
        behaviour.respond(self, request_index)

    def log_message(self, format: str, *args: object) -> None:
        # Tests read server.requests; the default log would clutter stderr.
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    local: LocalServer


class LocalServer:
    """An HTTP server on 127.0.0.1 that responds to each path with its Behaviour.

    Use it as a context manager: it serves from a background thread between
    ``__enter__`` and ``__exit__``. ``requests`` lists what it received, in
    order.
    """

    def __init__(self) -> None:
        self._routes: dict[str, Behaviour] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def route(self, path: str, behaviour: Behaviour) -> None:
        """Respond to requests for ``path`` (starting with "/") with ``behaviour``."""
        if not path.startswith("/"):
            raise ValueError(f"route path {path!r} must start with '/'")
        with self._lock:
            self._routes[path] = behaviour

    def url(self, path: str = "/") -> str:
        """Return the http URL of ``path`` on this server."""
        if self._server is None:
            raise RuntimeError("LocalServer.url() needs a running server: use `with`")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """Return the recorded requests for ``path``, in order."""
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def _record(self, handler: BaseHTTPRequestHandler) -> tuple[Behaviour | None, int]:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.requests.append(
                RecordedRequest(handler.command, path, dict(handler.headers.items()))
            )
            request_index = self._counts.get(path, 0)
            self._counts[path] = request_index + 1
            return self._routes.get(path), request_index

    def __enter__(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.local = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # Shutdown waits up to one poll interval; the default is 0.5 s.
            kwargs={"poll_interval": 0.02},
            name="LocalServer",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        with self._lock:
            for behaviour in self._routes.values():
                if isinstance(behaviour, Stall):
                    behaviour.stopped.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """Yield an http URL on 127.0.0.1 whose port is bound but not listening, so
    every connection to it is refused while the context is open."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"

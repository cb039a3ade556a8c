"""The one local test HTTP server: a real threaded server on 127.0.0.1 that serves bytes or
a directory, optionally with latency, and misbehaves on request.

`serve_directory(dir)` serves a folder (the fixture channel) and yields its base URL;
`latency` delays every request (the bench's far-away server). `FaultServer(files, faults)`
serves a mapping of paths to bytes (and `directory=` for what the mapping lacks).

Each path has a fault script: one fault per request, in order, then `then` (default "ok")
for every later request. Faults:

- "ok": 200 with the body;
- "500", "503", "404" (or any status code): that status with a short body;
- "truncate": 200 with the full Content-Length, half the body, then the connection closes;
- "stall": nothing at all until `stall_seconds` have passed, then the connection closes;
- "close": the connection closes without a response;
- "delay": waits `delay_seconds`, then serves the body;
- "slowbody:503" (any code): the status line and headers, then the body `delay_seconds` later.

Every request is recorded with its path and headers, so tests can check what went on the wire.
`tls` serves HTTPS with that context; `guard(path, headers)` returns the path to serve or
None for a 401 (a server that demands credentials).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, so the client's connection reuse is exercised too.
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: one line per request would drown pytest's report."""

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        owner = self.server.owner
        fault = owner._record_and_next_fault(self.path, dict(self.headers.items()))
        if owner.latency:
            owner._stopping.wait(owner.latency)  # the round trip to a far-away server
        path = urlsplit(self.path).path
        guard = owner.guard
        if guard is not None:
            allowed = guard(path, {k.title(): v for k, v in self.headers.items()})
            if allowed is None:
                self._status(401)
                return
            path = allowed
        body = owner.files.get(path)
        if body is None and fault == "ok":
            on_disk = owner._on_disk(path)
            if on_disk is not None:
                self._send_file(on_disk, head)
                return
        if fault == "delay":
            self.server.owner._stopping.wait(self.server.owner.delay_seconds)
            fault = "ok"
        if fault == "ok":
            if body is None:
                self._status(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                with contextlib.suppress(OSError):  # the client may give up halfway
                    self.wfile.write(body)
        elif fault == "truncate":
            data = body or b"x" * 1000
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._hang_up()
        elif fault == "stall":
            self.server.owner._stopping.wait(self.server.owner.stall_seconds)
            self._hang_up()
        elif fault == "close":
            self._hang_up()
        elif fault.startswith("slowbody:"):
            self._status(int(fault.partition(":")[2]), body_after=self.server.owner.delay_seconds)
        else:
            self._status(int(fault))

    def _send_file(self, path: Path, head: bool) -> None:
        with path.open("rb") as fh:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            if not head:
                with contextlib.suppress(OSError):  # streamed: bench packages are large
                    shutil.copyfileobj(fh, self.wfile, 1 << 20)

    def _status(self, code: int, body_after: float = 0.0) -> None:
        body = f"status {code}\n".encode() * max(1, self.server.owner.error_body_size // 11)
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body_after:
            self.wfile.flush()
            self.server.owner._stopping.wait(body_after)
        with contextlib.suppress(OSError):  # the client may hang up without reading the body
            self.wfile.write(body)

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's listen backlog is 5: 50 parallel downloads (rattler's default) had
    # their extra SYNs dropped and retried after 1-3 s, which the cold-pack bench measured
    # instead of envpack. A real server's accept queue is far deeper.
    request_queue_size = 128
    owner: FaultServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-request are part of the game here, not news."""


class FaultServer:
    """`with FaultServer({"/a": b"..."}, faults={"/a": ["500", "ok"]}) as srv: srv.url("/a")`."""

    def __init__(
        self,
        files: Mapping[str, bytes] | None = None,
        faults: Mapping[str, Sequence[str]] | None = None,
        *,
        directory: Path | None = None,
        latency: float = 0.0,
        then: Mapping[str, str] | None = None,
        stall_seconds: float = 3.0,
        delay_seconds: float = 0.25,
        error_body_size: int = 88,
        tls: ssl.SSLContext | None = None,
        guard: Callable[[str, Mapping[str, str]], str | None] | None = None,
    ) -> None:
        self.tls = tls
        self.guard = guard
        self.files = dict(files or {})
        self.directory = directory.resolve() if directory is not None else None
        self.latency = latency
        self._scripts = {path: list(script) for path, script in (faults or {}).items()}
        self._then = dict(then or {})
        self.stall_seconds = stall_seconds
        self.delay_seconds = delay_seconds
        self.error_body_size = error_body_size
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- scripting ---------------------------------------------------------------------------

    def script(self, path: str, faults: Sequence[str], then: str = "ok") -> None:
        with self._lock:
            self._scripts[path] = list(faults)
            self._then[path] = then

    def _record_and_next_fault(self, raw_path: str, headers: dict[str, str]) -> str:
        path = urlsplit(raw_path).path
        with self._lock:
            # Header names as HTTP/1 clients differ in case (hyper sends them lowercase).
            self.requests.append(Recorded(raw_path, {k.title(): v for k, v in headers.items()}))
            script = self._scripts.get(path)
            if script:
                return script.pop(0)
            return self._then.get(path, "ok")

    def _on_disk(self, path: str) -> Path | None:
        """The file below `directory` that `path` names; `..` never climbs out. Symlinks
        are followed, as a static file server does (tests serve a channel through one)."""
        if self.directory is None:
            return None
        parts = [part for part in unquote(path).split("/") if part not in ("", ".")]
        if ".." in parts:
            return None
        candidate = self.directory.joinpath(*parts)
        return candidate if candidate.is_file() else None

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if urlsplit(r.path).path == path)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None, "use the server as a context manager"
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return self.base_url + path

    def __enter__(self) -> FaultServer:
        # Port 0: the kernel picks a free port, so parallel test runs never collide.
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        # A short poll interval: shutdown() waits for the loop to notice, once per test.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="test-http", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()  # wakes stalled handlers so they hang up at once
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


@contextlib.contextmanager
def serve(
    files: Mapping[str, bytes], faults: Mapping[str, Sequence[str]] | None = None, **kw: Any
) -> Iterator[FaultServer]:
    with FaultServer(files, faults, **kw) as server:
        yield server


@contextlib.contextmanager
def serve_directory(directory: Path, latency: float = 0.0) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 at a free port; yield the base URL without a slash."""
    with FaultServer(directory=directory, latency=latency) as server:
        yield server.base_url

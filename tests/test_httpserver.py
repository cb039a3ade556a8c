"""devtools.httpserver: the one local test server, serving a directory, latency and faults."""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devtools.httpserver import FaultServer, serve_directory


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _raw(url: str, path: str, method: str = "GET") -> http.client.HTTPResponse:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request(method, path)
    return conn.getresponse()


def test_serves_a_directory_and_nothing_outside_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "linux-64").mkdir(parents=True)
    payload = bytes(range(256)) * 8192  # 2 MiB: streamed in chunks
    (root / "linux-64" / "pkg-1.0-0.conda").write_bytes(payload)
    (root / "a b+c.txt").write_text("spaced")
    (tmp_path / "secret").write_text("outside")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "f").write_text("through a link")
    (root / "link").symlink_to(tmp_path / "linked")  # followed, as a static server does
    with serve_directory(root) as url:
        assert url.startswith("http://127.0.0.1:")
        assert _get(f"{url}/linux-64/pkg-1.0-0.conda") == (200, payload)
        assert _get(f"{url}/a%20b+c.txt") == (200, b"spaced")
        assert _get(f"{url}/linux-64/absent.conda")[0] == 404
        assert _get(f"{url}/link/f") == (200, b"through a link")
        assert _get(f"{url}/linux-64")[0] == 404  # no directory listings
        assert _raw(url, "/../secret").status == 404
        assert _raw(url, "/%2e%2e/secret").status == 404
        head = _raw(url, "/linux-64/pkg-1.0-0.conda", "HEAD")
        assert head.status == 200
        assert head.getheader("Content-Length") == str(len(payload))
        assert head.read() == b""


def test_latency_delays_every_request(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with serve_directory(tmp_path, latency=0.3) as url:
        for _ in range(2):
            start = time.monotonic()
            assert _get(f"{url}/f") == (200, b"x")
            assert time.monotonic() - start >= 0.3


def test_fifty_parallel_connections_are_accepted_at_once(tmp_path: Path) -> None:
    # A backlog of 5 (socketserver's default) drops the rest of a burst of connections:
    # those are retried by the kernel after a second, the bench measured that instead.
    (tmp_path / "f").write_bytes(b"x")
    with serve_directory(tmp_path, latency=0.05) as url:
        parts = urlsplit(url)
        waits: list[float] = []

        def connect_and_get() -> None:
            start = time.monotonic()
            with socket.create_connection((parts.hostname or "", parts.port or 0)) as sock:
                sock.sendall(b"GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while sock.recv(65536):
                    pass
            waits.append(time.monotonic() - start)

        threads = [threading.Thread(target=connect_and_get) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(waits) == 50
    assert max(waits) < 0.9, sorted(waits)[-5:]  # no SYN waited for the kernel's 1 s retry


def test_faults_apply_to_directory_files_too(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"from disk")
    with FaultServer({"/mem": b"in memory"}, {"/f": ["503", "404"]}, directory=tmp_path) as srv:
        assert _get(srv.url("/f"))[0] == 503
        assert _get(srv.url("/f"))[0] == 404
        assert _get(srv.url("/f")) == (200, b"from disk")
        assert _get(srv.url("/mem")) == (200, b"in memory")
        assert srv.count("/f") == 3
        assert [r.path for r in srv.requests] == ["/f", "/f", "/f", "/mem"]


def test_a_truncated_response_is_cut_short(tmp_path: Path) -> None:
    with FaultServer({"/f": b"0123456789" * 100}, {"/f": ["truncate"]}) as srv:
        response = _raw(srv.base_url, "/f")
        assert response.getheader("Content-Length") == "1000"
        with pytest.raises(http.client.IncompleteRead):
            response.read()

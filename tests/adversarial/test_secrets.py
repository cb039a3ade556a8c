"""Credentials in the lock's URLs (`/t/<token>/`, `user:pass@`) and in `--auth-file` reach the
server that demands them, and nowhere else: not the archive (raw or decompressed), the
manifest, stdout, stderr, `-v` logs, the cache's names, nor the error line of a failed run.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial import craft
from tests.adversarial.conftest import Packed, Run, one_error_line, run
from tests.adversarial.test_pack_faults import _lock_paths

TOKEN = "tk-5ecret-c0nda-t0ken-7731"
USER = "alice-5ecret-user"
PASSWORD = "pw-5ecret-pass-9914"
BEARER = "bearer-5ecret-0042-xyz"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = (TOKEN, USER, PASSWORD, BEARER, BASIC)
PLACEHOLDER = "https://fixture.envpack.invalid/channel"


class _Guarded(BaseHTTPRequestHandler):
    """Serves the channel only to requests that carry one of the expected credentials."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        path, how = self.path, None
        if path.startswith(f"/t/{TOKEN}/"):
            path, how = path[len(f"/t/{TOKEN}") :], "token"
        elif self.headers.get("Authorization") == f"Basic {BASIC}":
            how = "basic"
        elif self.headers.get("Authorization") == f"Bearer {BEARER}":
            how = "bearer"
        body = self.server.files.get(path)
        if how is None:
            self._reply(401, b"credentials required\n")
        elif body is None or path in self.server.missing:
            self._reply(404, b"no such file\n")
        else:
            self.server.used.append((path, how))
            self._reply(200, body)

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, bytes]
    missing: set[str]
    used: list[tuple[str, str]]


@pytest.fixture
def guarded(packed: Packed) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Guarded)
    root = packed.channel.root
    server.files = {p: (root / p.lstrip("/")).read_bytes() for p in _lock_paths(packed.channel)}
    server.missing = set()
    server.used = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def _secret_lock(packed: Packed, port: int, dest: Path) -> Path:
    """Every third package by token, by user:pass, by the auth file's bearer token."""
    styles = [
        f"http://127.0.0.1:{port}/t/{TOKEN}",
        f"http://{USER}:{PASSWORD}@127.0.0.1:{port}",
        f"http://localhost:{port}",  # credentials only in --auth-file
    ]
    text = packed.channel.lock_v6.read_text()
    lines = []
    # The same URL in both sections of the lock, so one style per file, by name.
    for line in text.splitlines():
        if PLACEHOLDER in line and "conda: " in line:
            path = line.split(PLACEHOLDER, 1)[1]
            line = line.replace(PLACEHOLDER, styles[_style_of(path)])
        else:
            line = line.replace(PLACEHOLDER, styles[0])
        lines.append(line)
    dest.mkdir(parents=True)
    (dest / "pixi.lock").write_text("\n".join(lines) + "\n")
    return dest


def _style_of(path: str) -> int:
    return sum(path.encode()) % 3


def _auth_file(where: Path) -> Path:
    path = where / "auth.json"
    path.write_text(f'{{"localhost": {{"BearerToken": "{BEARER}"}}}}')
    return path


def _leaks(label: str, data: bytes) -> list[str]:
    return [f"{label} holds {s!r}" for s in SECRETS if s.encode() in data]


def _pack(project: Path, out: Path, where: Path, *extra: str) -> Run:
    return run(
        "envpack",
        project,
        "-o",
        out,
        "--cache",
        where / "cache",
        "--auth-file",
        _auth_file(where),
        "--retries",
        "1",
        *extra,
    )


def test_secrets_are_sent_and_appear_nowhere(
    packed: Packed, guarded: _Server, tmp_path: Path
) -> None:
    project = _secret_lock(packed, guarded.server_address[1], tmp_path / "project")
    leaks: list[str] = []
    for compression in ("zstd", "none"):
        out = tmp_path / f"env-{compression}.tar"
        result = _pack(project, out, tmp_path, "-v", "--compression", compression)
        assert result.returncode == 0, result.err
        raw = out.read_bytes()
        leaks += _leaks(f"{compression} archive", raw)
        leaks += _leaks(f"{compression} archive, decompressed", craft.decompress(raw))
        for entry in craft.read_entries(raw):
            leaks += _leaks(f"{compression} member {entry.name}", entry.data)
        leaks += _leaks("stdout", result.stdout) + _leaks("stderr (-v)", result.stderr)
    dry = run("envpack", project, "--dry-run", "--json", "-v")
    assert dry.returncode == 0, dry.err
    leaks += _leaks("--dry-run --json", dry.stdout + dry.stderr)
    names = "\n".join(str(p) for p in (tmp_path / "cache").rglob("*")).encode()
    leaks += _leaks("cache file names", names)
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file() and path.stat().st_size < 1 << 16:
            leaks += _leaks(f"cache file {path.name}", path.read_bytes())
    assert not leaks, "\n".join(leaks)
    # The server refused anyone without credentials, so every kind was really sent.
    assert {how for _, how in guarded.used} == {"token", "basic", "bearer"}


@pytest.mark.parametrize("style", ["token", "basic"])
def test_failed_download_names_no_secret(
    packed: Packed, guarded: _Server, tmp_path: Path, style: str
) -> None:
    project = _secret_lock(packed, guarded.server_address[1], tmp_path / "project")
    lock = (project / "pixi.lock").read_text()
    # A package fetched with the style under test answers 404.
    marker = f"/t/{TOKEN}/" if style == "token" else f"{USER}:{PASSWORD}@"
    victim = next(
        line.split(":", 1)[1].strip()
        for line in lock.splitlines()
        if "conda: " in line and marker in line
    )
    guarded.missing.add("/" + victim.split("/", 3)[3].removeprefix(f"t/{TOKEN}/"))
    result = _pack(project, tmp_path / "env.tar", tmp_path, "-v")
    line = one_error_line(result, "404")
    assert not _leaks("error line", line.encode()), line
    assert not _leaks("stderr (-v)", result.stderr), result.err[-2000:]
    assert not _leaks("stdout", result.stdout)
    assert not (tmp_path / "env.tar").exists()


def test_invalid_lock_error_names_no_secret(packed: Packed, tmp_path: Path) -> None:
    """A lock whose environment names a token URL its package list lacks: rattler refuses it."""
    project = _secret_lock(packed, 9, tmp_path / "project")
    lock = project / "pixi.lock"
    lines = lock.read_text().splitlines()
    # Drop one package's whole entry from the bottom `packages:` list (entries there start
    # at column 0), and keep the environment's reference to it.
    start = max(
        i for i, line in enumerate(lines) if line.startswith("- conda: ") and f"/t/{TOKEN}/" in line
    )
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("- ")), len(lines))
    del lines[start:end]
    lock.write_text("\n".join(lines) + "\n")
    result = run("envpack", project, "-o", tmp_path / "env.tar")
    line = one_error_line(result, "pixi.lock")
    assert not _leaks("error line", line.encode()), line

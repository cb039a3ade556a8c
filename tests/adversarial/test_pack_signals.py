"""SIGINT and SIGTERM during `envpack`'s downloads: the real binary, a real signal.

Within a second the downloads are cancelled, their `.part` files removed, `error:
interrupted` printed, and the exit code is 130 (SIGINT) or 143 (SIGTERM). The cache stays
valid: the next run with it succeeds. A server that is not there at all is said in words.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from devtools.fixtures.channel import lock_for
from devtools.httpserver import FaultServer
from tests.adversarial.conftest import Packed, one_error_line, run
from tests.adversarial.test_pack_faults import cache_problems
from tests.adversarial.test_pack_faults import channel_files as channel_files
from tests.clirun import BIN, assert_one_error_line


def _dead_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _parts(cache: Path) -> list[Path]:
    return list(cache.rglob("*.part")) if cache.exists() else []


def _interrupt(project: Path, tmp: Path, sig: int, wait_for_parts: bool) -> tuple[int, str, float]:
    """Start envpack, signal it mid-download; (exit code, stderr, seconds from signal to exit)."""
    cache, out = tmp / "cache", tmp / "env.tar"
    proc = subprocess.Popen(
        [str(BIN / "envpack"), str(project), "-o", str(out), "--cache", str(cache)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    # Downloads in flight: their temp files exist (slow server), or retries are under way.
    while time.monotonic() < deadline and proc.poll() is None:
        if _parts(cache) if wait_for_parts else cache.exists():
            break
        time.sleep(0.05)
    if not wait_for_parts:
        time.sleep(1.0)  # let a few connection attempts fail and back off
    assert proc.poll() is None, "envpack finished before it could be interrupted"
    if wait_for_parts:
        assert _parts(cache), "no download was in flight"
    sent = time.monotonic()
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=30)
    seconds = time.monotonic() - sent
    assert not out.exists()
    assert not list(tmp.glob(".env.tar.*")), "the temp output was left behind"
    return proc.returncode, err.decode(errors="replace"), seconds


def _check(code: int, err: str, seconds: float, expected: int) -> None:
    completed = subprocess.CompletedProcess([], code, b"", err.encode())
    line = assert_one_error_line(completed)
    assert line == "error: interrupted", err[-2000:]
    assert code == expected, err[-2000:]
    assert seconds < 1.0, f"took {seconds:.2f} s to stop"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_slow_downloads(
    packed: Packed, channel_files: dict[str, bytes], tmp_path: Path, sig: int, code: int
) -> None:
    with FaultServer(channel_files, delay_seconds=30) as server:
        for path in channel_files:
            server.script(path, [], then="delay")  # headers only after 30 s
        project = lock_for(packed.channel.lock_v6, server.base_url, tmp_path / "project").parent
        result = _interrupt(project, tmp_path, sig, wait_for_parts=True)
    _check(*result, expected=code)
    cache = tmp_path / "cache"
    assert not _parts(cache), _parts(cache)
    assert not cache_problems(cache), cache_problems(cache)
    # The same cache serves the next run, from a server that answers.
    with FaultServer(channel_files) as server:
        project = lock_for(packed.channel.lock_v6, server.base_url, tmp_path / "again").parent
        again = run("envpack", project, "-o", tmp_path / "env.tar", "--cache", cache, "-q")
    assert again.returncode == 0, again.err
    assert not cache_problems(cache)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_while_retrying_a_dead_server(
    packed: Packed, tmp_path: Path, sig: int, code: int
) -> None:
    url = f"http://127.0.0.1:{_dead_port()}"
    project = lock_for(packed.channel.lock_v6, url, tmp_path / "project").parent
    result = _interrupt(project, tmp_path, sig, wait_for_parts=False)
    _check(*result, expected=code)
    assert not _parts(tmp_path / "cache")
    assert not cache_problems(tmp_path / "cache")


def test_dead_server_says_connection_refused(packed: Packed, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_dead_port()}"
    project = lock_for(packed.channel.lock_v6, url, tmp_path / "project").parent
    result = run(
        "envpack", project, "-o", tmp_path / "env.tar", "--cache", tmp_path / "c", "--retries", "2"
    )
    line = one_error_line(result, "connection refused", url)
    assert "Error" not in line, line  # words, not an exception class name
    assert not (tmp_path / "env.tar").exists()

"""`envpack` against a channel served through devtools/httpserver.py, which misbehaves on script.

Transient faults (500/503, truncated bodies, stalls past `--timeout`, closed connections)
must be ridden out by retries; persistent ones must fail with one clear error line within a
bounded time. Whatever happens, the content-addressed cache only ever holds files whose
sha256 is their name, and the output path holds a complete archive or nothing.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.httpserver import FaultServer
from tests.adversarial.conftest import Packed, Run, note, one_error_line, record, run
from tests.clirun import BIN

SEED = 4242
PYTHON = "/linux-64/python-3.11.2-hcffc78c_0_cpython.conda"


def _lock_paths(channel: FixtureChannel) -> list[str]:
    """URL paths of the artifacts the linux-64 lock names, e.g. /noarch/six-….tar.bz2."""
    text = channel.lock_v6.read_text()
    placeholder = "https://fixture.envpack.invalid/channel"
    paths = set()
    for line in text.splitlines():
        if "conda: " + placeholder in line and ("/linux-64/" in line or "/noarch/" in line):
            paths.add(line.split(placeholder, 1)[1].strip())
    return sorted(paths)


@pytest.fixture(scope="module")
def channel_files(packed: Packed) -> dict[str, bytes]:
    root = packed.channel.root
    return {path: (root / path.lstrip("/")).read_bytes() for path in _lock_paths(packed.channel)}


@pytest.fixture
def faulty(channel_files: dict[str, bytes]) -> Iterator[FaultServer]:
    with FaultServer(channel_files, stall_seconds=4.0, delay_seconds=0.3) as server:
        yield server


def _project(packed: Packed, server: FaultServer, where: Path) -> Path:
    return lock_for(packed.channel.lock_v6, server.base_url, where / "project").parent


def cache_problems(cache: Path) -> list[str]:
    """Files in the cache that are not verified content: bad names, wrong hashes, temp files."""
    problems: list[str] = []
    if not cache.exists():
        return problems
    for path in sorted(p for p in cache.rglob("*") if p.is_file()):
        rel = path.relative_to(cache)
        if path.name.endswith(".part"):
            problems.append(f"temp file left: {rel}")
        elif rel.parts[0] == "sha256":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != path.name or rel.parts[1] != path.name[:2]:
                problems.append(f"{rel} hashes to {digest}")
    return problems


def _pack(project: Path, out: Path, cache: Path, *extra: str, timeout: float = 120) -> Run:
    return run(
        "envpack",
        project,
        "-o",
        out,
        "--cache",
        cache,
        "--timeout",
        "1",
        *extra,
        timeout=timeout,
    )


def _scenario(name: str, ok: bool) -> None:
    record("pack fault scenarios passed", ok)
    if not ok:
        note(f"pack fault scenario failed: {name}")


TRANSIENT = ["500", "503", "truncate", "close", "stall", "502", "ok", "ok"]


@pytest.mark.slow
def test_random_transient_faults_are_retried(
    packed: Packed, faulty: FaultServer, channel_files: dict[str, bytes], tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    scripted = 0
    for path in channel_files:
        # Up to two faults before the file is served: within --retries 4.
        faults = [f for f in (rng.choice(TRANSIENT) for _ in range(2)) if f != "ok"]
        faulty.script(path, faults)
        scripted += len(faults)
    out, cache = tmp_path / "env.tar", tmp_path / "cache"
    start = time.monotonic()
    result = _pack(_project(packed, faulty, tmp_path), out, cache, "--retries", "4")
    seconds = time.monotonic() - start
    ok = result.returncode == 0 and out.is_file() and not cache_problems(cache)
    _scenario("random transient faults", ok)
    assert result.returncode == 0, result.err
    assert scripted > 10, "the seed should inject a fair number of faults"
    assert sum(faulty.count(p) for p in channel_files) >= len(channel_files) + scripted
    assert not cache_problems(cache)
    assert seconds < 60, f"{seconds:.1f}s"
    # The archive is whole: envunpack --list reads it through to the end.
    listed = run("envunpack", "--list", out)
    assert listed.returncode == 0, listed.err


PERSISTENT = {
    "503": ("giving up", "HTTP 503"),
    "500": ("giving up", "HTTP 500"),
    "truncate": ("giving up",),
    "close": ("giving up",),
    "stall": ("giving up",),
    "404": ("HTTP 404",),
}


@pytest.mark.parametrize("fault", sorted(PERSISTENT))
def test_persistent_fault_fails_clearly_and_in_bounded_time(
    packed: Packed, faulty: FaultServer, fault: str, tmp_path: Path
) -> None:
    faulty.script(PYTHON, [], then=fault)
    out, cache = tmp_path / "env.tar", tmp_path / "cache"
    start = time.monotonic()
    result = _pack(_project(packed, faulty, tmp_path), out, cache, "--retries", "3")
    seconds = time.monotonic() - start
    try:
        line = one_error_line(result, "python", *PERSISTENT[fault])
        # 3 attempts: at most 3 timeouts of 1 s plus backoff 0.5 + 1 s (x1.5 jitter), plus
        # the rest of the downloads and the interpreter start.
        assert seconds < 15, f"{seconds:.1f}s: {line}"
        assert not out.exists()
        assert not list(tmp_path.glob(".env.tar.*")), "the temp output was left behind"
        assert not cache_problems(cache), cache_problems(cache)
        assert faulty.count(PYTHON) == (1 if fault == "404" else 3)
    except AssertionError:
        _scenario(f"persistent {fault}", False)
        raise
    _scenario(f"persistent {fault}", True)


def test_wrong_bytes_never_reach_the_cache(
    packed: Packed, channel_files: dict[str, bytes], tmp_path: Path
) -> None:
    """A server that answers 200 with other bytes: a hash mismatch, and nothing cached."""
    files = dict(channel_files)
    body = bytearray(files[PYTHON])
    body[1000] ^= 0xFF
    files[PYTHON] = bytes(body)
    with FaultServer(files) as server:
        out, cache = tmp_path / "env.tar", tmp_path / "cache"
        result = _pack(_project(packed, server, tmp_path), out, cache)
    try:
        one_error_line(result, "sha256 mismatch")
        assert not out.exists()
        assert not cache_problems(cache)
        wrong = hashlib.sha256(files[PYTHON]).hexdigest()
        assert not list(cache.rglob(wrong + "*"))
    except AssertionError:
        _scenario("wrong bytes", False)
        raise
    _scenario("wrong bytes", True)


@pytest.mark.slow
def test_sigkill_during_pack_leaves_no_output(
    packed: Packed, channel_files: dict[str, bytes], tmp_path: Path
) -> None:
    """Kill envpack at seeded moments: the output path never holds a partial archive."""
    rng = random.Random(SEED)
    leftovers: list[str] = []
    with FaultServer(channel_files, delay_seconds=0.15) as server:
        for path in channel_files:
            server.script(path, [], then="delay")  # slow enough to be caught mid-way
        project = _project(packed, server, tmp_path)
        for round_ in range(4):
            out_dir = tmp_path / f"round{round_}"
            out_dir.mkdir()
            out, cache = out_dir / "env.tar", tmp_path / "cache"
            proc = subprocess.Popen(
                [str(BIN / "envpack"), str(project), "-o", str(out), "--cache", str(cache)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.3, 1.5))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            if out.exists():
                # Only an archive that is complete may sit at the output path.
                listed = run("envunpack", "--list", out)
                assert listed.returncode == 0, f"partial archive at {out}: {listed.err}"
            leftovers += [str(p.relative_to(tmp_path)) for p in out_dir.glob(".env.tar.*.part")]
            assert not [p for p in cache_problems(cache) if "temp file" not in p]
            leftovers += [p for p in cache_problems(cache) if "temp file" in p]
        # After the kills, a normal run succeeds with the same cache.
        final = tmp_path / "final.tar"
        result = _pack(project, final, tmp_path / "cache")
        assert result.returncode == 0, result.err
        assert not [p for p in cache_problems(tmp_path / "cache") if "temp file" not in p]
    _scenario("SIGKILL during pack", True)
    if leftovers:
        note(f"SIGKILL during pack left temp files (never at the output path): {leftovers}")

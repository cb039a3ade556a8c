"""Run the installed console scripts as a user would, and check the one-line error contract."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def run_cli(
    prog: str,
    *args: str | Path,
    env: dict[str, str] | None = None,
    input_bytes: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[bytes]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(BIN / prog), *map(str, args)],
        capture_output=True,
        env=full_env,
        input=input_bytes,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    """Non-zero exit, no traceback, and stderr ends with exactly one `error:` line."""
    stderr = result.stderr.decode()
    assert result.returncode != 0, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "no error message at all"
    assert lines[-1].startswith("error: "), stderr
    assert sum(line.startswith("error:") for line in lines) == 1, stderr
    for needle in needles:
        assert needle in lines[-1], f"{needle!r} not in {lines[-1]!r}"
    return lines[-1]


def interrupt_mid_pipe(binary: Path, archive: Path, out: Path, sig: int) -> tuple[int, str]:
    """Feed half of `archive` to `binary - -o out` through a pipe and send `sig` once it
    stages; returns the exit code and the last stderr line."""
    data = archive.read_bytes()
    proc = subprocess.Popen(
        [str(binary), "-", "-o", str(out), "-q"], stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(data[: len(data) // 2])
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not list(out.glob(".envpack-staging-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(out.glob(".envpack-staging-*")), "the unpack never started staging"
    proc.send_signal(sig)
    code = proc.wait(timeout=30)
    lines = proc.stderr.read().decode().strip().splitlines()
    proc.stdin.close()
    return code, lines[-1] if lines else ""

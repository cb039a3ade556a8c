"""SIGKILL `envunpack` at 20 seeded moments: the env is absent or complete, the next run works.

Even-numbered rounds kill a fresh install; odd ones kill a `--force` replacement of a
complete env, whose window between the two renames must not leave a broken env either.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.adversarial.conftest import Packed, record, run
from tests.clirun import BIN

SEED = 8
KILLS = 20
CHECK = "import ssl, sqlite3; print(sqlite3.connect(':memory:').execute('select 1').fetchone())"


def _complete(env: Path) -> bool:
    """The env runs: its python imports ssl and sqlite3 (native libraries and all)."""
    python = env / "bin" / "python3"
    if not python.exists():
        return False
    result = subprocess.run(
        [str(python), "-c", CHECK], capture_output=True, text=True, env={}, check=False
    )
    return result.returncode == 0 and result.stdout.strip() == "(1,)"


def _staging(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(".envpack-staging-*")) if out.exists() else []


def _round(archive: Path, where: Path, index: int, delay: float) -> str | None:
    """Kill one run after `delay` seconds; None if every promise held, else why not."""
    out = where / "out"
    env = out / "env"
    if index % 2 == 1 and not env.exists():  # odd rounds replace a complete env
        first = run("envunpack", archive, "-o", out, "-q")
        if first.returncode != 0:
            return f"round {index}: the setup unpack failed: {first.err[-300:]}"
    elif index % 2 == 0 and env.exists():
        subprocess.run(["rm", "-rf", str(env)], check=True)
    proc = subprocess.Popen(
        [str(BIN / "envunpack"), str(archive), "-o", str(out), "-q", "--force"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    finished_first = proc.poll() is not None
    if not finished_first:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    moment = (
        f"round {index} (killed at {delay:.2f}s{', after it finished' if finished_first else ''})"
    )
    if env.exists() and not _complete(env):
        return f"{moment}: {env} exists but its python does not run"
    again = run("envunpack", archive, "-o", out, "-q", *(["--force"] if env.exists() else []))
    if again.returncode != 0:
        return f"{moment}: the next run failed: {again.err[-300:]}"
    if not _complete(env):
        return f"{moment}: the next run left an env whose python does not run"
    if leftovers := _staging(out):
        return f"{moment}: the next run left {leftovers}"
    return None


@pytest.mark.slow
def test_sigkill_never_leaves_a_broken_env(packed: Packed, tmp_path: Path) -> None:
    # How long a whole unpack takes here, so the kills spread over all of it.
    start = time.monotonic()
    measured = run("envunpack", packed.zstd, "-o", tmp_path / "measure", "-q")
    full = time.monotonic() - start
    assert measured.returncode == 0, measured.err
    rng = random.Random(SEED)
    delays = [rng.uniform(0, full) for _ in range(KILLS)]

    # Two workspaces in parallel (two cores), each running its rounds in order and keeping
    # its env across them: lane 0 the fresh installs, lane 1 the --force replacements.
    def lane(parity: int) -> list[str | None]:
        return [
            _round(packed.zstd, tmp_path / f"lane{parity}", i, delays[i])
            for i in range(parity, KILLS, 2)
        ]

    with ThreadPoolExecutor(2) as pool:
        outcomes = [why for lane_outcomes in pool.map(lane, (0, 1)) for why in lane_outcomes]
    failures = [why for why in outcomes if why is not None]
    for why in outcomes:
        record("kills survived", why is None)
    print(f"kills survived: {KILLS - len(failures)}/{KILLS} (full unpack {full:.2f}s)")
    assert not failures, "\n".join(failures)

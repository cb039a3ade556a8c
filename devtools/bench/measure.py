"""Measuring: round-robin races, medians and paired ratios, peak memory and disk."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Contestant:
    name: str
    run: Callable[[], object]
    prepare: Callable[[], object] = lambda: None  # untimed, before every run
    check: Callable[[], object] = lambda: None  # untimed, once after the warm-up run


Times = dict[str, list[float]]


def race(contestants: Sequence[Contestant], runs: int) -> Times:
    """Run every contestant `runs` times, round-robin with a rotating order, after one
    untimed warm-up each (which also fills the page cache and checks the result)."""
    for c in contestants:
        c.prepare()
        c.run()
        c.check()
    times: Times = {c.name: [] for c in contestants}
    for i in range(runs):
        k = i % len(contestants)
        for c in [*contestants[k:], *contestants[:k]]:
            c.prepare()
            start = time.perf_counter()
            c.run()
            times[c.name].append(time.perf_counter() - start)
    return times


def median(times: Times, name: str) -> float:
    return statistics.median(times[name])


def ratio(times: Times, a: str, b: str) -> float:
    """How long `a` takes relative to `b`: the median of the per-round ratios."""
    return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))


def sh(*cmd: str | Path, cwd: Path | None = None) -> str:
    """Run a command; on failure raise with the tail of its stderr."""
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise RuntimeError(f"{' '.join(map(str, cmd))[:300]} failed ({proc.returncode}):\n{tail}")
    return proc.stdout


def shell(script: str) -> None:
    sh("bash", "-o", "pipefail", "-c", script)


def disk_usage(path: Path) -> int:
    """Bytes on disk under `path`, each hardlinked inode counted once."""
    seen: set[int] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            st = (Path(root) / name).lstat()
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks * 512
    return total


def fs_used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@dataclass(frozen=True)
class Peak:
    rss_mb: float
    extra_disk: int  # bytes used on the output's filesystem beyond the final result
    final_disk: int


_RSS_PROBE = (
    "import resource, subprocess, sys;"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak(cmd: Sequence[str | Path], watch: Path) -> Peak:
    """Peak RSS of `cmd` (its largest process, via a fresh wrapper's RUSAGE_CHILDREN) and
    peak extra space on `watch`'s filesystem, polled with statvfs every 20 ms."""
    before = fs_used(watch)
    highest = before
    done = threading.Event()

    def poll() -> None:
        nonlocal highest
        while not done.is_set():
            highest = max(highest, fs_used(watch))
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        out = sh("/usr/bin/python3", "-c", _RSS_PROBE, *cmd)
    finally:
        done.set()
        poller.join()
    after = fs_used(watch)
    highest = max(highest, after)
    return Peak(int(out.split()[-1]) / 1024, highest - after, after - before)


@contextlib.contextmanager
def private_fs(path: Path, size: str) -> Iterator[tuple[Path, bool]]:
    """A tmpfs at `path`, so no one else's writes show in statvfs; the plain dir if not root."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield path, mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)

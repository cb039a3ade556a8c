"""Shared pieces of the adversarial suite: the fixture env packed once, a run of the real CLI
under resource limits, a snapshot of the directory around `-o`, and the figures the suite
reports at the end of the session (malicious archives refused, corruptions detected, …).
"""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from tests.clirun import BIN, assert_one_error_line

# --- figures -----------------------------------------------------------------------------------

# name → [passed, total]; filled by the tests, printed once at the end of the session.
FIGURES: dict[str, list[int]] = {}
NOTES: list[str] = []
_FIGURE_LOCK = threading.Lock()
# Test functions whose every case counts towards one figure, by outcome.
_COUNTED = {"test_malicious_archive_is_refused": "malicious archives refused"}


def record(name: str, ok: bool) -> None:
    with _FIGURE_LOCK:
        entry = FIGURES.setdefault(name, [0, 0])
        entry[0] += int(ok)
        entry[1] += 1


def note(line: str) -> None:
    with _FIGURE_LOCK:
        NOTES.append(line)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    function = report.nodeid.split("::")[-1].split("[")[0]
    figure = _COUNTED.get(function)
    if figure is None:
        return
    # A case counts once: its call phase, or a setup that failed or skipped (not counted).
    if report.when == "call":
        record(figure, report.passed)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES and not NOTES:
        return
    terminalreporter.section("adversarial figures")
    for name, (ok, total) in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: {ok}/{total}")
    for line in NOTES:
        terminalreporter.write_line(line)


# --- the fixture env, packed once --------------------------------------------------------------


@dataclass(frozen=True)
class Packed:
    zstd: Path
    plain: Path
    project: Path
    cache: Path
    channel: FixtureChannel
    url: str


@pytest.fixture(scope="session")
def packed(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel, channel_url: str
) -> Packed:
    """The fixture env packed by the real envpack, zstd and plain, for this host."""
    base = tmp_path_factory.mktemp("adversarial-packed")
    project = lock_for(fixture_channel.lock_v6, channel_url, base / "project").parent
    out = {}
    for compression in ("zstd", "none"):
        archive = base / f"env-{compression}.tar"
        result = run(
            "envpack",
            project,
            "-o",
            archive,
            "--cache",
            base / "cache",
            "-q",
            "--compression",
            compression,
        )
        assert result.returncode == 0, result.stderr
        out[compression] = archive
    return Packed(out["zstd"], out["none"], project, base / "cache", fixture_channel, channel_url)


# --- running the CLIs under limits -------------------------------------------------------------


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes
    maxrss_mb: float
    seconds: float
    killed_by_timeout: bool = False

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")


@dataclass
class Limits:
    """rlimits for the child: crafted bombs must hit our checks, never the test machine."""

    address_space: int | None = None
    file_size: int | None = 2 << 30
    cpu_seconds: int | None = 120
    extra: dict[int, int] = field(default_factory=dict)

    def apply(self) -> None:  # runs in the child between fork and exec
        if self.address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (self.address_space, self.address_space))
        if self.file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size, self.file_size))
        if self.cpu_seconds is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds))


def run(
    prog: str,
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    limits: Limits | None = None,
    cwd: Path | None = None,
) -> Run:
    """Run a console script; measure its own peak RSS (wait4) and wall time."""
    argv = [str(BIN / prog), *map(str, args)]
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            preexec_fn=(limits or Limits()).apply,
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        return Run(
            argv,
            proc.returncode,
            out.read(),
            err.read(),
            usage.ru_maxrss / 1024,
            seconds,
            timed_out.is_set(),
        )


def one_error_line(result: Run, *needles: str) -> str:
    """The `error:` contract of tests/clirun.py, plus: no panic, no Python or Rust backtrace."""
    completed = subprocess.CompletedProcess(result.args, result.returncode, result.stdout)
    completed.stderr = result.stderr
    assert not result.killed_by_timeout, f"timed out: {result.err[-2000:]}"
    assert result.returncode > 0, f"exit {result.returncode} (signal?): {result.err[-2000:]}"
    line = assert_one_error_line(completed, *needles)
    assert "panicked" not in result.err, result.err[-3000:]
    assert "stack backtrace" not in result.err, result.err[-3000:]
    return line


# --- snapshots ---------------------------------------------------------------------------------

Snapshot = dict[str, tuple[str, int, int, int]]


def snapshot(root: Path) -> Snapshot:
    """path → (kind, size, mode, mtime_ns) of everything below root, links not followed."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            kind = (
                "link"
                if stat.S_ISLNK(st.st_mode)
                else "dir"
                if stat.S_ISDIR(st.st_mode)
                else "file"
            )
            size = 0 if kind == "dir" else st.st_size
            out[str(path.relative_to(root))] = (
                kind,
                size,
                stat.S_IMODE(st.st_mode),
                st.st_mtime_ns,
            )
    return out


def diff(before: Snapshot, after: Snapshot) -> list[str]:
    changes = [f"+ {p}" for p in sorted(set(after) - set(before))]
    changes += [f"- {p}" for p in sorted(set(before) - set(after))]
    changes += [
        f"~ {p}: {before[p]} → {after[p]}"
        for p in sorted(set(before) & set(after))
        if before[p] != after[p]
    ]
    return changes


@dataclass
class Workspace:
    """A parent directory (snapshotted) with `-o` inside it and a victim dir beside it.

    Crafted paths aim at `parent/escape*` and `parent/victim/`: if anything got out of
    `-o`, the snapshot of the parent shows it.
    """

    parent: Path

    @property
    def out(self) -> Path:
        return self.parent / "out"

    @property
    def victim(self) -> Path:
        return self.parent / "victim"

    def unpack_refused(
        self,
        archive: Path,
        *needles: str,
        extra: Sequence[str] = (),
        limits: Limits | None = None,
        timeout: float = 120,
    ) -> tuple[str, Run]:
        before = snapshot(self.parent)
        result = run("envunpack", archive, "-o", self.out, *extra, limits=limits, timeout=timeout)
        # The worst outcome first: anything written or removed outside -o.
        changes = [c for c in diff(before, snapshot(self.parent)) if not _is_out(c)]
        assert not changes, (
            f"exit {result.returncode}: {result.err[-500:]}\n"
            "the run changed the parent of -o:\n" + "\n".join(changes)
        )
        line = one_error_line(result, *needles)
        leftovers = sorted(str(p.relative_to(self.parent)) for p in self.out.rglob("*"))
        assert not self.out.exists(), f"a refused unpack left -o behind: {leftovers[:10]}"
        return line, result


def _is_out(change: str) -> bool:
    """Changes inside -o are judged separately (it must be gone); the rest must not exist."""
    path = change[2:].split(":", 1)[0]
    return path == "out" or path.startswith("out/")


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "victim").mkdir()
    (parent / "victim" / "precious.txt").write_text("do not touch\n")
    yield Workspace(parent)

"""The environment under test, packed and installed once, and the baseline's command."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devtools.bench.baseline import lock_records
from devtools.bench.common import BENCH_VENV, BIN, PROBE, ROOT, say
from devtools.bench.measure import disk_usage, sh
from devtools.fixtures import bigenv
from devtools.fixtures.channel import build as build_fixture
from devtools.fixtures.channel import lock_for
from devtools.fixtures.locks import solve, write_lock_v7
from devtools.httpserver import serve_directory

# The baseline runs through the bench's entry script, which imports only devtools.bench.baseline
# for it: the fixture builders (rattler_build and all) stay out of that process, so it
# starts as lean as envunpack.
ENTRY = ROOT / "scripts" / "bench.py"
# Issue 19's tiny env: 7 packages (with libhello, libzlib, ncurses), 3.5 MB, no python.
TINY_SPECS = ("hello-c", "openssl", "readline", "libsqlite", "libzlib")
TINY_PACKAGES = 7
TINY_LIBS = ("libssl.so.3", "libsqlite3.so.0", "libreadline.so.8", "libz.so.1")


@dataclass
class Workspace:
    """One env packed and installed once; every section measures against these."""

    kind: str
    tmp: Path
    channel: Path
    lock: Path  # URLs still pointing at the placeholder
    project: Path  # pixi.lock pointing at the zero-latency server
    cache: Path  # envpack's cache, warm
    archive: Path  # envpack's zstd archive
    installed: Path  # the env, installed by envunpack
    packages: int
    artifact_bytes: int
    installed_bytes: int
    conda_packs: dict[str, Path] = field(default_factory=dict)

    def conda_pack(self, suffix: str) -> Path:
        """conda-pack's archive of the installed env (`tar.gz` or `tar.zst`), made once."""
        if suffix not in self.conda_packs:
            out = self.tmp / f"conda-pack.{suffix}"
            sh(BENCH_VENV / "bin" / "conda-pack", "-p", self.installed, "-o", out, "-q", "--force")
            self.conda_packs[suffix] = out
        return self.conda_packs[suffix]

    def warm_pack(self, out: Path, *extra: str | Path) -> Callable[[], str]:
        """envpack of this env from its warm cache into `out`, replaced on every run."""
        # --force: every run after the warm-up replaces the last one's output.
        cmd: list[str | Path] = [BIN / "envpack", self.project, "-o", out, "--cache", self.cache]
        cmd += ["-q", "--force"]
        return lambda: sh(*cmd, *extra)

    @property
    def has_python(self) -> bool:
        return self.kind != "tiny"

    def env_check(self, prefix: Path) -> Callable[[], str]:
        """What the unpacked env must do: its python imports its packages (tiny: its
        program runs and its libraries load, each from the env's lib/)."""
        if not self.has_python:
            libs = ", ".join(f"'{prefix}/lib/{name}'" for name in TINY_LIBS)
            load = f"import ctypes; [ctypes.CDLL(p) for p in ({libs},)]"
            return lambda: sh(prefix / "bin" / "hello-c") + sh("/usr/bin/python3", "-c", load)
        return lambda: sh(prefix / "bin" / "python", "-c", PROBE[self.kind])


def channel_for(kind: str, tmp: Path, *, payload: bool = False) -> tuple[Path, Path]:
    if kind in ("fixture", "tiny") and not payload:
        fixture = build_fixture()
        if kind == "tiny":
            return fixture.root, tiny_lock(fixture.root, tmp / "tiny.lock")
        return fixture.root, fixture.lock_v6
    built = bigenv.build(payload=payload, progress=True)
    return built.root, built.lock


@contextlib.contextmanager
def workspace(kind: str, tmp: Path) -> Iterator[Workspace]:
    channel, lock = channel_for(kind, tmp)
    with serve_directory(channel, 0.0) as url:
        project = lock_for(lock, url, tmp / "project").parent
        cache, archive = tmp / "envpack-cache", tmp / "envpack.tar.zst"
        say("packing and installing the env once")
        sh(BIN / "envpack", project, "-o", archive, "--cache", cache, "-q")
        # Installed the way conda users have it: package cache kept, which conda-pack reads
        # to find each file's prefix placeholders (without it, it guesses, and warns).
        sh(*rattler_cmd(lock, channel, tmp / "installed" / "env", tmp / "installed-pkgs"))
        records = lock_records(lock)
        yield Workspace(
            kind=kind,
            tmp=tmp,
            channel=channel,
            lock=lock,
            project=project,
            cache=cache,
            archive=archive,
            installed=tmp / "installed" / "env",
            packages=len(records),
            artifact_bytes=sum((channel / r.subdir / r.file_name).stat().st_size for r in records),
            installed_bytes=disk_usage(tmp / "installed" / "env"),
        )


def tiny_lock(channel: Path, path: Path) -> Path:
    """The tiny env: the fixture channel's real binaries without python, solved here (the
    channel's own locks all have CPython), written as a lock envpack reads."""
    records = {p: solve(channel, p, TINY_SPECS) for p in ("linux-64",)}
    assert len(records["linux-64"]) == TINY_PACKAGES, records
    write_lock_v7(records, path)
    return path


def rattler_cmd(
    lock: Path, channel: Path, prefix: Path, cache: Path, *, clean: bool = False
) -> list[str | Path]:
    """The baseline as its own process, so it pays the same interpreter start as envunpack.
    Its package cache stays unless `clean` (the peak-disk run, whose end state must be
    the env alone); the timed runs delete it untimed, before the next run."""
    args: list[str | Path] = [sys.executable, ENTRY, "_rattler-install", lock, channel]
    return [*args, prefix, cache, "clean" if clean else "keep"]

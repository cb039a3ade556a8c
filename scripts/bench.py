"""Benchmarks against the peers: `scripts/bench pack|unpack|unpacker|selfextract|app|all`.

Every figure is a median of several runs, and the contestants of each comparison run in
turn (round-robin, the order rotating every round) within one invocation, so on a shared,
noisy machine they all see the same noise. Ratios are the medians of the per-round ratios.

The environment is the benchmark env of `tests/fixtures/bigenv.py` (~75 packages, numpy,
scipy, pandas, pyarrow, ...); `--env fixture` runs the same on the small fixture env.
`all` also writes docs/benchmarks.md (and docs/benchmarks.svg).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from html import escape
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rattler  # noqa: E402
import urllib3  # noqa: E402

# The fixture builders (rattler_build and all) load only in the parent process, so the
# rattler.install baseline's own process starts as lean as envunpack's.
if __name__ == "__main__" and sys.argv[1:2] != ["_rattler-install"]:
    from tests.fixtures import bigenv
    from tests.fixtures.channel import build as build_fixture
    from tests.fixtures.channel import lock_for

BIN = Path(sys.executable).parent
FROZEN = ROOT / "dist" / "envunpack-x86_64-linux"
BENCH_VENV = Path(os.environ.get("ENVPACK_DEV_CACHE") or Path.home() / ".cache" / "envpack-dev") / (
    "bench-venv"
)
DOCS = ROOT / "docs"
# What the env must do once unpacked: its compiled extensions and vendored libs load.
PROBE = {
    "bench": "import numpy, scipy.linalg, pandas, pyarrow, yaml, sympy, ssl, sqlite3; "
    "assert pandas.DataFrame({'a': [1, 2]}).a.sum() == 3; print(numpy.__file__)",
    "fixture": "import ssl, sqlite3, dateutil, tabulate; print(ssl.__file__)",
}
NOT_BUILT = "not built"


# --- measuring ---------------------------------------------------------------------------------


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


# --- serving -----------------------------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay = 0.0

    def do_GET(self) -> None:
        if self.delay:
            time.sleep(self.delay)  # the round trip to a far-away server, per request
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path, delay: float) -> Iterator[str]:
    handler = type("H", (_Handler,), {"delay": delay})
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- the environment under test ----------------------------------------------------------------


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

    def python_check(self, prefix: Path) -> Callable[[], str]:
        return lambda: sh(prefix / "bin" / "python", "-c", PROBE[self.kind])


def channel_for(kind: str, *, payload: bool = False) -> tuple[Path, Path]:
    if kind == "fixture" and not payload:
        fixture = build_fixture()
        return fixture.root, fixture.lock_v6
    built = bigenv.build(payload=payload, progress=True)
    return built.root, built.lock


def lock_records(lock: Path) -> list[rattler.RepoDataRecord]:
    env = rattler.LockFile.from_path(lock).environment("default")
    assert env is not None
    platform_ = next(p for p in env.platforms() if p.name == str(rattler.Subdir.current()))
    return list(env.conda_repodata_records_for_platform(platform_) or [])


@contextlib.contextmanager
def workspace(kind: str, tmp: Path) -> Iterator[Workspace]:
    channel, lock = channel_for(kind)
    with serve(channel, 0.0) as url:
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


def rattler_install(lock: Path, channel: Path, prefix: Path, cache: Path, *, clean: bool) -> None:
    """The baseline: rattler.install of the lock's records from the local channel's files."""
    local = [
        rattler.RepoDataRecord(
            r, r.file_name, (channel / r.subdir / r.file_name).as_uri(), str(r.channel)
        )
        for r in lock_records(lock)
    ]
    asyncio.run(rattler.install(local, target_prefix=prefix, cache_dir=cache, show_progress=False))
    if clean:
        shutil.rmtree(cache)


def rattler_cmd(
    lock: Path, channel: Path, prefix: Path, cache: Path, *, clean: bool = False
) -> list[str | Path]:
    """The baseline as its own process, so it pays the same interpreter start as envunpack.
    Its package cache stays unless `clean` (the peak-disk run, whose end state must be
    the env alone); the timed runs delete it untimed, before the next run."""
    args: list[str | Path] = [sys.executable, __file__, "_rattler-install", lock, channel]
    return [*args, prefix, cache, "clean" if clean else "keep"]


# --- sections ----------------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    lines: list[str]
    figures: dict[str, float | None] = field(default_factory=dict)
    bars: list[tuple[str, float]] = field(default_factory=list)  # for the chart: name, seconds


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    # A `|` inside a cell (shell pipelines in contestant names) would end the cell.
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return out


def secs(value: float) -> str:
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def times_x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def mb(size: float) -> str:
    return f"{size / 1e6:,.1f} MB"


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def frozen_available() -> bool:
    return FROZEN.is_file() and os.access(FROZEN, os.X_OK)


def bench_unpack(ws: Workspace, runs: int) -> Section:
    dest = ws.tmp / "unpack"
    env = dest / "env"

    def fresh() -> None:
        shutil.rmtree(dest, ignore_errors=True)

    def fresh_and_cache() -> None:
        fresh()
        shutil.rmtree(ws.tmp / "rattler-cache", ignore_errors=True)

    def fresh_env_dir() -> None:
        fresh()
        env.mkdir(parents=True)

    gz, zst = ws.conda_pack("tar.gz"), ws.conda_pack("tar.zst")
    floor = ws.tmp / "installed.tar"
    sh("tar", "-C", ws.installed.parent, "-cf", floor, "env")
    check = ws.python_check(env)
    contestants = [
        Contestant(
            "envunpack (venv)",
            lambda: sh(BIN / "envunpack", ws.archive, "-o", dest, "-q"),
            fresh,
            check,
        ),
        Contestant(
            "raw rattler.install",
            lambda: sh(*rattler_cmd(ws.lock, ws.channel, env, ws.tmp / "rattler-cache")),
            fresh_and_cache,
            check,
        ),
        Contestant(
            "conda-pack gz: tar -xzf + conda-unpack",
            lambda: shell(
                f"tar -xzf '{gz}' -C '{env}' && '{env}/bin/python' '{env}/bin/conda-unpack'"
            ),
            fresh_env_dir,
            check,
        ),
        Contestant(
            "conda-pack zst: tar -x --zstd + conda-unpack",
            lambda: shell(
                f"tar --zstd -xf '{zst}' -C '{env}' && '{env}/bin/python' '{env}/bin/conda-unpack'"
            ),
            fresh_env_dir,
            check,
        ),
        Contestant(
            "tar -xf of the installed env (floor)",
            lambda: sh("tar", "-C", dest, "-xf", floor),
            fresh_env_dir,
        ),
    ]
    if frozen_available():
        contestants.insert(
            1,
            Contestant(
                "envunpack (frozen)",
                lambda: sh(FROZEN, ws.archive, "-o", dest, "-q"),
                fresh,
                check,
            ),
        )
    say(f"unpack: {len(contestants)} contestants x {runs} runs")
    times = race(contestants, runs)
    fresh()
    ours = "envunpack (venv)"
    rows = [
        [c.name, secs(median(times, c.name)), times_x(ratio(times, ours, c.name))]
        for c in contestants
    ]
    if not frozen_available():
        rows.insert(1, ["envunpack (frozen)", NOT_BUILT, "—"])
    figures: dict[str, float | None] = {
        "unpack_vs_condapack_gz": ratio(times, ours, contestants[-3].name),
        "unpack_vs_condapack_zst": ratio(times, ours, contestants[-2].name),
        "unpack_vs_rattler": ratio(times, ours, "raw rattler.install"),
        "unpack_vs_tar": ratio(times, ours, contestants[-1].name),
        "unpack_frozen_vs_venv": (
            ratio(times, "envunpack (frozen)", ours) if frozen_available() else None
        ),
    }
    lines = [
        "From an archive file to a runnable env at the same path. Each run starts from an",
        "empty directory; after the warm-up, each contestant's env had to import its packages",
        f"with the env's own python (`{PROBE[ws.kind].split(';')[0]}`).",
        "Raw rattler.install links the lock's records straight from the channel's files; its",
        "package cache is deleted untimed between runs, while envunpack deletes its own",
        "(staged archive members and extracted packages) within its time.",
        "",
        *table(["contestant", "median", "envunpack (venv) ÷ this"], rows),
    ]
    bars = [(c.name, median(times, c.name)) for c in contestants]
    return Section("Unpack", lines, figures, bars)


def bench_peaks(ws: Workspace, runs: int) -> Section:
    """Peak RSS and peak extra disk while unpacking, on the env and on a 1 GiB payload."""
    rows: list[list[str]] = []
    figures: dict[str, float | None] = {}
    with private_fs(ws.tmp / "peakfs", "6g") as (fs, private):
        rows += peaks_for(ws, ws.archive, ws.lock, ws.channel, fs, runs, "env", figures)
        payload = payload_archive(ws)
        if payload is not None:
            archive, lock, channel = payload
            rows += peaks_for(
                ws, archive, lock, channel, fs, max(1, min(runs, 3)), "1 GiB", figures
            )
            archive.unlink()
    where = (
        "a private tmpfs, so other processes' writes do not count"
        if private
        else "the shared disk (no tmpfs: not root), so other writers add noise"
    )
    lines = [
        "Peak resident memory of the largest process, and the most space used on the output's",
        "filesystem beyond the finished env (statvfs polled every 20 ms; the output is on",
        f"{where}).",
        "The archive itself is read from another filesystem.",
        "",
        *table(["payload", "contestant", "peak RSS", "peak extra disk", "packages' size"], rows),
    ]
    return Section("Peak memory and disk during unpack", lines, figures)


def payload_archive(ws: Workspace) -> tuple[Path, Path, Path] | None:
    if ws.kind != "bench":
        return None
    say("payload: building (cached) and packing the 1 GiB package")
    channel, lock = channel_for("bench", payload=True)
    with serve(channel, 0.0) as url:
        project = lock_for(lock, url, ws.tmp / "payload-project").parent
        archive, cache = ws.tmp / "payload.tar.zst", ws.tmp / "payload-cache"
        sh(BIN / "envpack", project, "-o", archive, "--cache", cache, "-q")
        shutil.rmtree(cache)
    return archive, lock, channel


def peaks_for(
    ws: Workspace,
    archive: Path,
    lock: Path,
    channel: Path,
    fs: Path,
    runs: int,
    label: str,
    figures: dict[str, float | None],
) -> list[list[str]]:
    dest = fs / "out"
    records = lock_records(lock)
    packages = sum((channel / r.subdir / r.file_name).stat().st_size for r in records)
    commands: list[tuple[str, list[str | Path]]] = [
        ("envunpack (venv)", [BIN / "envunpack", archive, "-o", dest, "-q"]),
    ]
    if frozen_available():
        commands.append(("envunpack (frozen)", [FROZEN, archive, "-o", dest, "-q"]))
    commands.append(
        (
            "raw rattler.install (+ shutil.rmtree of its cache)",
            rattler_cmd(lock, channel, dest / "env", dest / "rattler-cache", clean=True),
        )
    )
    if label == "env":
        gz = ws.conda_pack("tar.gz")
        env = dest / "env"
        script = (
            f"mkdir -p '{env}' && tar -xzf '{gz}' -C '{env}' "
            f"&& '{env}/bin/python' '{env}/bin/conda-unpack'"
        )
        commands.append(("conda-pack gz", ["bash", "-c", script]))
    rows = []
    for name, cmd in commands:
        say(f"peaks ({label}): {name}")
        got = []
        for _ in range(runs):
            shutil.rmtree(dest, ignore_errors=True)
            got.append(peak(cmd, fs))
        shutil.rmtree(dest, ignore_errors=True)
        rss = statistics.median(p.rss_mb for p in got)
        extra = statistics.median(p.extra_disk for p in got)
        rows.append([label, name, f"{rss:.0f} MB", mb(extra), mb(packages)])
        key = "venv" if name == "envunpack (venv)" else "frozen" if "frozen" in name else None
        if key is not None:
            figures[f"peak_rss_mb_{key}_{label}"] = rss
            figures[f"peak_extra_over_packages_{key}_{label}"] = extra / packages
    if not frozen_available():
        rows.insert(1, [label, "envunpack (frozen)", NOT_BUILT, "—", mb(packages)])
    return rows


def bench_pack(ws: Workspace, runs: int) -> Section:
    out = ws.tmp / "pack"
    out.mkdir(exist_ok=True)
    files = sorted(p for p in ws.cache.rglob("*") if p.is_file())
    listing = ws.tmp / "cache-files.txt"
    listing.write_text("\n".join(str(p.relative_to(ws.cache)) for p in files) + "\n")
    cp = BENCH_VENV / "bin" / "conda-pack"
    ours = "envpack, warm cache (zstd -3, all cores)"
    contestants = [
        Contestant(
            ours,
            lambda: sh(
                BIN / "envpack", ws.project, "-o", out / "warm.tar", "--cache", ws.cache, "-q"
            ),
        ),
        Contestant(
            "tar -c of the same artifacts | zstd -3 -T0",
            lambda: shell(
                f"tar -C '{ws.cache}' -cf - -T '{listing}' "
                f"| zstd -q -3 -T0 > '{out}/artifacts.tar.zst'"
            ),
        ),
        Contestant(
            "conda-pack, tar.gz (default level 4, 1 thread)",
            lambda: sh(cp, "-p", ws.installed, "-o", out / "cp.tar.gz", "-q", "--force"),
        ),
        Contestant(
            "conda-pack, tar.zst (default level 4, 1 thread)",
            lambda: sh(cp, "-p", ws.installed, "-o", out / "cp.tar.zst", "-q", "--force"),
        ),
        Contestant(
            "tar -c of the installed env | gzip -4",
            lambda: shell(
                f"tar -C '{ws.installed.parent}' -cf - env | gzip -4 > '{out}/env.tar.gz'"
            ),
        ),
    ]
    say(f"pack (warm): {len(contestants)} contestants x {runs} runs")
    times = race(contestants, runs)
    rows = [
        [c.name, secs(median(times, c.name)), times_x(ratio(times, ours, c.name))]
        for c in contestants
    ]
    figures: dict[str, float | None] = {
        "pack_warm_vs_condapack_gz": ratio(times, ours, contestants[2].name),
        "pack_warm_vs_condapack_zst": ratio(times, ours, contestants[3].name),
        "pack_warm_vs_tar_zstd": ratio(times, ours, contestants[1].name),
    }
    cold_rows, cold_figures = bench_cold(ws, runs)
    figures.update(cold_figures)
    shutil.rmtree(out, ignore_errors=True)
    lines = [
        "Warm cache: every artifact is already in envpack's cache (and is hashed again, as",
        "envpack always does); conda-pack packs the installed env.",
        "",
        *table(["contestant", "median", "envpack ÷ this"], rows),
        "",
        "Cold cache: every artifact downloaded from a local HTTP server that adds 50 ms to",
        "each request, against downloading the same files one after another (urllib3, in",
        "process, so without envpack's interpreter start or archive writing).",
        "",
        *table(["contestant", "median", "speed-up over sequential"], cold_rows),
    ]
    bars = [(c.name, median(times, c.name)) for c in contestants]
    return Section("Pack (warm cache)", lines, figures, bars)


def bench_cold(ws: Workspace, runs: int) -> tuple[list[list[str]], dict[str, float | None]]:
    records = lock_records(ws.lock)
    with serve(ws.channel, 0.05) as url:
        project = lock_for(ws.lock, url, ws.tmp / "slow-project").parent
        urls = [f"{url}/{r.subdir}/{r.file_name}" for r in records]
        http = urllib3.PoolManager()
        out, cold_cache = ws.tmp / "cold.tar", ws.tmp / "cold-cache"

        def sequential() -> None:
            for u in urls:
                assert http.request("GET", u).status == 200

        def cold(concurrency: int) -> Contestant:
            return Contestant(
                f"envpack, cold cache, --concurrency {concurrency}",
                lambda: sh(
                    BIN / "envpack",
                    project,
                    "-o",
                    out,
                    "--cache",
                    cold_cache,
                    "-q",
                    "--concurrency",
                    str(concurrency),
                ),
                lambda: shutil.rmtree(cold_cache, ignore_errors=True),
            )

        contestants = [cold(8), cold(32), Contestant("sequential downloads", sequential)]
        say(f"pack (cold, 50 ms): {len(contestants)} contestants x {runs} runs")
        times = race(contestants, runs)
    shutil.rmtree(cold_cache, ignore_errors=True)
    out.unlink(missing_ok=True)
    seq = contestants[-1].name
    rows = [
        [c.name, secs(median(times, c.name)), times_x(ratio(times, seq, c.name))]
        for c in contestants
    ]
    figures: dict[str, float | None] = {
        "cold_speedup_default": ratio(times, seq, contestants[0].name),
        "cold_speedup_32": ratio(times, seq, contestants[1].name),
    }
    return rows, figures


def bench_sizes(ws: Workspace) -> Section:
    none = ws.tmp / "envpack-none.tar"
    sh(BIN / "envpack", ws.project, "-o", none, "--cache", ws.cache, "-q", "--compression", "none")
    zstd = ws.archive.stat().st_size
    gz = ws.conda_pack("tar.gz").stat().st_size
    sizes = [
        ("envpack, zstd (default)", zstd),
        ("envpack, --compression none", none.stat().st_size),
        ("conda-pack, tar.gz", gz),
        ("conda-pack, tar.zst", ws.conda_pack("tar.zst").stat().st_size),
        ("plain sum of the artifacts", ws.artifact_bytes),
        ("installed env (for scale)", ws.installed_bytes),
    ]
    none.unlink()
    rows = [[name, mb(size), times_x(zstd / size)] for name, size in sizes]
    lines = table(["archive", "size", "envpack zstd ÷ this"], rows)
    return Section("Archive size", lines, {"size_zstd_vs_condapack_gz": zstd / gz})


def bench_unpacker(runs: int) -> Section:
    runs = max(runs, 10)
    rows: list[list[str]] = []
    figures: dict[str, float | None] = {}
    binaries = sorted((ROOT / "dist").glob("envunpack-*")) if (ROOT / "dist").is_dir() else []
    binaries = [b for b in binaries if not b.name.endswith(".sha256")]
    size_rows = [[b.name, mb(b.stat().st_size)] for b in binaries] or [[FROZEN.name, NOT_BUILT]]
    contestants = [Contestant("python3 -c pass", lambda: sh("/usr/bin/python3", "-c", "pass"))]
    contestants.append(
        Contestant("envunpack --version (venv)", lambda: sh(BIN / "envunpack", "--version"))
    )
    if frozen_available():
        contestants += [
            Contestant("envunpack --version (frozen)", lambda: sh(FROZEN, "--version")),
            Contestant("envunpack --help (frozen)", lambda: sh(FROZEN, "--help")),
        ]
    say(f"unpacker: {len(contestants)} contestants x {runs} runs")
    times = race(contestants, runs)
    base = contestants[0].name
    rows = [
        [c.name, secs(median(times, c.name)), times_x(ratio(times, c.name, base))]
        for c in contestants
    ]
    if not frozen_available():
        rows.append(["envunpack --version / --help (frozen)", NOT_BUILT, "—"])
    else:
        figures["frozen_version_s"] = median(times, "envunpack --version (frozen)")
    lines = [
        *table(["binary", "size"], size_rows),
        "",
        *table(["command", "median wall time", "÷ python3 -c pass"], rows),
    ]
    return Section("The frozen unpacker", lines, figures)


def bench_selfextract(ws: Workspace, runs: int) -> Section:
    title = "Self-extracting executable"
    # Wide, or rich's help table would abbreviate the long option names.
    help_text = subprocess.run(
        [BIN / "envpack", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "300"},
    ).stdout
    if "--create-executable" not in help_text:
        return Section(title, ["`envpack --create-executable`: not available in this build."])
    if not frozen_available():
        return Section(title, [f"`envpack --create-executable`: {NOT_BUILT} (no {FROZEN.name})."])
    exe, dest = ws.tmp / "env.run", ws.tmp / "selfextract"
    ours = "envpack --create-executable (warm cache)"
    pack_contestants = [
        Contestant(
            ours,
            lambda: sh(
                BIN / "envpack",
                ws.project,
                "-o",
                exe,
                "--cache",
                ws.cache,
                "-q",
                "--create-executable",
                "--unpacker",
                FROZEN,
            ),
        ),
        Contestant(
            "envpack (warm cache)",
            lambda: sh(
                BIN / "envpack", ws.project, "-o", ws.tmp / "plain.tar", "--cache", ws.cache, "-q"
            ),
        ),
    ]

    def fresh() -> None:
        shutil.rmtree(dest, ignore_errors=True)

    check = ws.python_check(dest / "env")
    unpack_contestants = [
        Contestant("./env.run -o DIR", lambda: sh(exe, "-o", dest, "-q"), fresh, check),
        Contestant(
            "envunpack (frozen) ARCHIVE -o DIR",
            lambda: sh(FROZEN, ws.archive, "-o", dest, "-q"),
            fresh,
            check,
        ),
    ]
    say(f"selfextract: 2 + 2 contestants x {runs} runs")
    pack_times = race(pack_contestants, runs)
    unpack_times = race(unpack_contestants, runs)
    fresh()
    rss = []
    for _ in range(max(1, min(runs, 3))):
        fresh()  # envunpack refuses an existing env
        rss.append(peak([exe, "-o", dest, "-q"], ws.tmp).rss_mb)
    fresh()
    (ws.tmp / "plain.tar").unlink(missing_ok=True)
    rows = [
        [
            c.name,
            secs(median(pack_times, c.name)),
            times_x(ratio(pack_times, c.name, pack_contestants[1].name)),
        ]
        for c in pack_contestants
    ] + [
        [
            c.name,
            secs(median(unpack_times, c.name)),
            times_x(ratio(unpack_times, c.name, unpack_contestants[1].name)),
        ]
        for c in unpack_contestants
    ]
    size = exe.stat().st_size
    exe.unlink()
    lines = [
        f"`env.run` is {mb(size)}: the {mb(FROZEN.stat().st_size)} frozen envunpack plus the",
        f"{mb(ws.archive.stat().st_size)} archive. Its peak RSS while unpacking: "
        f"{statistics.median(rss):.0f} MB.",
        "",
        *table(["step", "median", "÷ the plain archive's"], rows),
    ]
    return Section(
        title,
        lines,
        {
            "selfextract_unpack_vs_frozen": ratio(
                unpack_times, unpack_contestants[0].name, unpack_contestants[1].name
            )
        },
    )


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    text: str
    key: str
    limit: float
    at_most: bool = True

    def verdict(self, figures: dict[str, float | None]) -> tuple[str, str]:
        value = figures.get(self.key)
        if value is None:
            return "—", "not measured"
        met = value <= self.limit if self.at_most else value >= self.limit
        # Three decimals where a goal sits right at its limit (peak disk ≈ the packages).
        digits = 3 if abs(value - self.limit) < 0.01 else 2
        shown = f"{value:.0f} MB" if "rss" in self.key else f"{value:.{digits}f}×"
        return shown, "met" if met else "**missed**"


GOALS = (
    Goal("envunpack (venv) ÷ conda-pack's unpack (gz) ≤ 1.0×", "unpack_vs_condapack_gz", 1.0),
    Goal("envunpack (venv) ÷ raw rattler.install ≤ 1.2×", "unpack_vs_rattler", 1.2),
    Goal("envpack warm ÷ conda-pack pack (gz) ≤ 1.0×", "pack_warm_vs_condapack_gz", 1.0),
    Goal("envpack warm ÷ tar -c + zstd ≤ 1.5× (issue 3)", "pack_warm_vs_tar_zstd", 1.5),
    Goal("zstd archive ÷ conda-pack gzip archive ≤ 1.0×", "size_zstd_vs_condapack_gz", 1.0),
    Goal("cold pack at 50 ms: speed-up over sequential ≥ 8×", "cold_speedup_default", 8, False),
    Goal("unpack peak RSS at 1 GiB ≤ 200 MB (venv)", "peak_rss_mb_venv_1 GiB", 200),
    Goal("unpack peak RSS at 1 GiB ≤ 200 MB (frozen)", "peak_rss_mb_frozen_1 GiB", 200),
    Goal(
        "peak extra disk ÷ packages' size ≤ 1.0× (1 GiB, venv)",
        "peak_extra_over_packages_venv_1 GiB",
        1.0,
    ),
)


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{when} · {model} · {os.cpu_count()} cores · {mem:.0f} GiB RAM · "
        f"Linux {platform.release()} · envpack at {commit or 'unknown commit'}"
    )


def describe_env(ws: Workspace) -> list[str]:
    what = (
        "numpy, scipy, pandas, pyarrow and 50 more packages repackaged from PyPI wheels, plus "
        if ws.kind == "bench"
        else ""
    )
    builder = "tests/fixtures/bigenv.py" if ws.kind == "bench" else "tests/fixtures/channel.py"
    return [
        f"The env: {ws.packages} conda packages ({what}CPython 3.11 and its libraries),",
        f"{mb(ws.artifact_bytes)} of package files, {mb(ws.installed_bytes)} installed. Built by",
        f"`{builder}` with py-rattler-build and served over HTTP on 127.0.0.1.",
    ]


def render(sections: Sequence[Section], ws: Workspace | None, runs: int) -> str:
    figures: dict[str, float | None] = {}
    for section in sections:
        figures.update(section.figures)
    goal_rows = [[g.text, *g.verdict(figures)] for g in GOALS if g.key in figures]
    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by `scripts/bench all`; do not edit by hand. -->",
        "",
        f"Measured on {machine()}.",
        "",
        f"Each figure is the median of {runs} runs after one warm-up. The machine is shared,",
        "so the contestants of each table run in turn within one invocation (round-robin, the",
        "order rotating every round), and each ratio is the median of the per-round ratios.",
        "",
    ]
    if ws is not None:
        out += [*describe_env(ws), ""]
    if goal_rows:
        out += ["## Goals", "", *table(["goal", "measured", "verdict"], goal_rows), ""]
    if any(section.bars for section in sections):
        out += ["![Median wall times](benchmarks.svg)", ""]
    for section in sections:
        out += [f"## {section.title}", "", *section.lines, ""]
    return "\n".join(out).rstrip() + "\n"


def render_svg(sections: Sequence[Section]) -> str | None:
    """Horizontal bars of the median times, one panel per section that has them."""
    panels = [s for s in sections if s.bars]
    if not panels:
        return None
    width, label_w, row_h, gap = 760, 330, 22, 34
    height = sum(gap + row_h * len(p.bars) for p in panels) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    y = 0
    for panel in panels:
        longest = max(t for _, t in panel.bars)
        out.append(f'<text x="4" y="{y + 22}" font-weight="bold">{escape(panel.title)}</text>')
        y += gap
        for name, seconds in panel.bars:
            bar = (width - label_w - 70) * seconds / longest
            colour = (
                "#2b6cb0"
                if name.startswith("envpack") or name.startswith("envunpack")
                else "#a0aec0"
            )
            out += [
                f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(name)}</text>',
                f'<rect x="{label_w}" y="{y + 4}" width="{bar:.1f}" height="{row_h - 8}" '
                f'fill="{colour}"/>',
                f'<text x="{label_w + bar + 4:.1f}" y="{y + 15}">{seconds:.2f} s</text>',
            ]
            y += row_h
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- main --------------------------------------------------------------------------------------


def bench_app(ws: Workspace, runs: int) -> Section:
    """`--entrypoint`: the launcher's warm overhead, the cold first run, the bytes added."""
    title = "App file (--entrypoint)"
    if not frozen_available():
        return Section(title, [f"`--entrypoint`: {NOT_BUILT} (no {FROZEN.name})."])
    sh(ROOT / "scripts" / "build-launcher", "--arch", "x86_64")  # beside FROZEN, in dist/
    app, plain, home = ws.tmp / "app.run", ws.tmp / "plain.run", ws.tmp / "apps"
    common: list[str | Path] = [
        "--cache",
        ws.cache,
        "-q",
        "--create-executable",
        "--unpacker",
        FROZEN,
    ]
    sh(BIN / "envpack", ws.project, "-o", plain, *common)
    sh(BIN / "envpack", ws.project, "-o", app, *common, "--entrypoint", "python")
    added = app.stat().st_size - plain.stat().st_size
    plain.unlink()
    os.environ["ENVPACK_APP_HOME"] = str(home)  # inherited by every sh() below
    # The entrypoint's own work is python doing nothing; both sides do exactly that.
    args = ["-I", "-S", "-c", "pass"]
    sh(app, *args)
    (python,) = home.glob("*/env/bin/python")
    warm = [
        Contestant("./app.run (warm)", lambda: sh(app, *args)),
        Contestant("env/bin/python directly", lambda: sh(python, *args)),
    ]
    dest = ws.tmp / "app-unpacked"

    def fresh() -> None:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)

    cold = [
        Contestant("./app.run (first run)", lambda: sh(app, *args), fresh),
        Contestant(
            "envunpack ARCHIVE -o DIR", lambda: sh(FROZEN, ws.archive, "-o", dest, "-q"), fresh
        ),
    ]
    pairs = max(runs, 20)
    say(f"app: 2 x {pairs} warm pairs, 2 x {runs} cold runs")
    warm_times = race(warm, pairs)
    cold_times = race(cold, runs)
    fresh()
    del os.environ["ENVPACK_APP_HOME"]
    app.unlink()
    overhead = statistics.median(
        a - b for a, b in zip(warm_times[warm[0].name], warm_times[warm[1].name], strict=True)
    )
    cold_ratio = ratio(cold_times, cold[0].name, cold[1].name)
    rows = [[c.name, f"{median(warm_times, c.name) * 1000:.1f} ms"] for c in warm] + [
        [c.name, secs(median(cold_times, c.name))] for c in cold
    ]
    lines = [
        f"Warm launch adds {overhead * 1000:.1f} ms (median of {pairs} pairs; goal <= 20 ms).",
        f"The first run takes {cold_ratio:.2f}x envunpack of the same archive (goal <= 1.05x).",
        f"The launcher and entrypoint add {added / 1024:.1f} KiB to the self-extracting file "
        "(goal <= 64 KiB).",
        "",
        *table(["run", "median"], rows),
    ]
    figures: dict[str, float | None] = {
        "app_warm_overhead_ms": overhead * 1000,
        "app_cold_vs_envunpack": cold_ratio,
        "app_added_kib": added / 1024,
    }
    return Section(title, lines, figures)


def attempt(title: str, fn: Callable[[], Section]) -> Section:
    """One section's failure is reported in its place; the others still make the report."""
    try:
        return fn()
    except Exception as exc:  # a benchmark run is long: keep what was measured
        traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Section(title, [f"**Failed:** `{first[:300]}`"])


def ensure_bench_venv() -> None:
    """conda-pack lives in its own venv under the dev cache, never in the project's."""
    if (BENCH_VENV / "bin" / "conda-pack").is_file():
        return
    say(f"creating {BENCH_VENV} with conda-pack")
    sh("/usr/bin/python3", "-m", "venv", BENCH_VENV)
    sh(
        BENCH_VENV / "bin" / "pip",
        "install",
        "-q",
        "conda-pack",
        "zstandard",
        "py-spy",
        "pyinstrument",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["_rattler-install"]:
        lock, channel, prefix, cache = map(Path, args_list[1:5])
        rattler_install(lock, channel, prefix, cache, clean=args_list[5] == "clean")
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["pack", "unpack", "unpacker", "selfextract", "app", "all"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--env", choices=["bench", "fixture"], default="bench")
    parser.add_argument("--output", type=Path, default=DOCS / "benchmarks.md", help="for `all`")
    args = parser.parse_args(args_list)
    if args.what == "unpacker":
        print(render([bench_unpacker(args.runs)], None, args.runs))
        return 0
    ensure_bench_venv()
    with (
        tempfile.TemporaryDirectory(prefix="envpack-bench-") as tmp_name,
        workspace(args.env, Path(tmp_name)) as ws,
    ):
        chosen: list[tuple[str, Callable[[], Section]]] = []
        if args.what in ("unpack", "all"):
            chosen += [
                ("Unpack", lambda: bench_unpack(ws, args.runs)),
                ("Peak memory and disk during unpack", lambda: bench_peaks(ws, args.runs)),
            ]
        if args.what in ("pack", "all"):
            chosen += [
                ("Pack", lambda: bench_pack(ws, args.runs)),
                ("Archive size", lambda: bench_sizes(ws)),
            ]
        if args.what == "all":
            chosen.append(("The frozen unpacker", lambda: bench_unpacker(args.runs)))
        if args.what in ("selfextract", "all"):
            chosen.append(("Self-extracting executable", lambda: bench_selfextract(ws, args.runs)))
        if args.what in ("app", "all"):
            chosen.append(("App file (--entrypoint)", lambda: bench_app(ws, args.runs)))
        sections = [attempt(title, fn) for title, fn in chosen]
        report = render(sections, ws, args.runs)
    print(report)
    if args.what == "all":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
        svg = render_svg(sections)
        if svg is not None:
            args.output.with_suffix(".svg").write_text(svg, encoding="utf-8")
        say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

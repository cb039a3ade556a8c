"""Unpack: envunpack against its peers, and the peak memory and disk of each."""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Callable
from pathlib import Path

from devtools.bench.baseline import lock_records
from devtools.bench.common import BIN, FROZEN, NOT_BUILT, PROBE, frozen_available, say
from devtools.bench.measure import Contestant, median, peak, private_fs, race, ratio, sh, shell
from devtools.bench.tables import Section, mb, secs, table, times_x
from devtools.bench.workspace import Workspace, channel_for, rattler_cmd
from devtools.fixtures.channel import lock_for
from devtools.httpserver import serve_directory

RATTLER = "raw rattler.install"


def unpack_contestants(
    ws: Workspace,
    dest: Path,
    cache: Path,
    fresh: Callable[[], None],
    fresh_rattler: Callable[[], None],
) -> list[Contestant]:
    """envunpack (venv, and frozen when built) into `dest`/env, and raw rattler.install with
    its package cache in `cache`: the contestants every unpack table has."""
    env = dest / "env"
    check = ws.env_check(env)
    ours = [
        Contestant(
            "envunpack (venv)",
            lambda: sh(BIN / "envunpack", ws.archive, "-o", dest, "-q"),
            fresh,
            check,
        )
    ]
    if frozen_available():
        ours.append(
            Contestant(
                "envunpack (frozen)",
                lambda: sh(FROZEN, ws.archive, "-o", dest, "-q"),
                fresh,
                check,
            )
        )
    rattler = Contestant(
        RATTLER,
        lambda: sh(*rattler_cmd(ws.lock, ws.channel, env, cache)),
        fresh_rattler,
        check,
    )
    return [*ours, rattler]


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

    floor = ws.tmp / "installed.tar"
    sh("tar", "-C", ws.installed.parent, "-cf", floor, "env")
    check = ws.env_check(env)
    contestants = [
        *unpack_contestants(ws, dest, ws.tmp / "rattler-cache", fresh, fresh_and_cache),
        *(_conda_pack_contestants(ws, env, fresh_env_dir, check) if ws.has_python else []),
        Contestant(
            "tar -xf of the installed env (floor)",
            lambda: sh("tar", "-C", dest, "-xf", floor),
            fresh_env_dir,
        ),
    ]
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
        **(
            {
                "unpack_vs_condapack_gz": ratio(times, ours, contestants[-3].name),
                "unpack_vs_condapack_zst": ratio(times, ours, contestants[-2].name),
            }
            if ws.has_python
            else {}
        ),
        "unpack_vs_rattler": ratio(times, ours, RATTLER),
        "unpack_vs_tar": ratio(times, ours, contestants[-1].name),
        "unpack_frozen_vs_venv": (
            ratio(times, "envunpack (frozen)", ours) if frozen_available() else None
        ),
        "unpack_frozen_vs_rattler": (
            ratio(times, "envunpack (frozen)", RATTLER) if frozen_available() else None
        ),
    }
    lines = [
        "From an archive file to a runnable env at the same path. Each run starts from an",
        "empty directory; after the warm-up, each contestant's env had to "
        + (
            f"import its packages\nwith the env's own python (`{PROBE[ws.kind].split(';')[0]}`)."
            if ws.has_python
            else "run its program\n(`hello-c`) and load its libraries."
        ),
        "Raw rattler.install links the lock's records straight from the channel's files; its",
        "package cache is deleted untimed between runs, while envunpack deletes its own",
        "(staged archive members and extracted packages) within its time.",
        "",
        *table(["contestant", "median", "envunpack (venv) ÷ this"], rows),
    ]
    bars = [(c.name, median(times, c.name)) for c in contestants]
    return Section("Unpack", lines, figures, bars)


def _conda_pack_contestants(
    ws: Workspace, env: Path, fresh: Callable[[], None], check: Callable[[], object]
) -> list[Contestant]:
    """conda-pack's unpack: conda-unpack is a python script run by the env's own python."""
    gz, zst = ws.conda_pack("tar.gz"), ws.conda_pack("tar.zst")
    return [
        Contestant(
            "conda-pack gz: tar -xzf + conda-unpack",
            lambda: shell(
                f"tar -xzf '{gz}' -C '{env}' && '{env}/bin/python' '{env}/bin/conda-unpack'"
            ),
            fresh,
            check,
        ),
        Contestant(
            "conda-pack zst: tar -x --zstd + conda-unpack",
            lambda: shell(
                f"tar --zstd -xf '{zst}' -C '{env}' && '{env}/bin/python' '{env}/bin/conda-unpack'"
            ),
            fresh,
            check,
        ),
    ]


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
    channel, lock = channel_for("bench", ws.tmp, payload=True)
    with serve_directory(channel, 0.0) as url:
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
    if label == "env" and ws.has_python:
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

"""Pack: envpack against its peers, warm and cold (50 ms latency), and archive sizes."""

from __future__ import annotations

import shutil

import urllib3

from devtools.bench.baseline import lock_records
from devtools.bench.common import BENCH_VENV, BIN, say
from devtools.bench.measure import Contestant, median, race, ratio, sh, shell
from devtools.bench.tables import Section, mb, secs, table, times_x
from devtools.bench.workspace import Workspace
from devtools.fixtures.channel import lock_for
from devtools.httpserver import serve_directory


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
            ws.warm_pack(out / "warm.tar"),
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
    with serve_directory(ws.channel, 0.05) as url:
        project = lock_for(ws.lock, url, ws.tmp / "slow-project").parent
        urls = [f"{url}/{r.subdir}/{r.file_name}" for r in records]
        http = urllib3.PoolManager()
        out, cold_cache = ws.tmp / "cold.tar", ws.tmp / "cold-cache"

        def sequential() -> None:
            for u in urls:
                assert http.request("GET", u).status == 200

        def cold(concurrency: int | None) -> Contestant:
            # None: the default flags, which is what issue 19's goal is about.
            flags = [] if concurrency is None else ["--concurrency", str(concurrency)]
            label = "default flags" if concurrency is None else f"--concurrency {concurrency}"
            return Contestant(
                f"envpack, cold cache, {label}",
                lambda: sh(
                    BIN / "envpack",
                    project,
                    "-o",
                    out,
                    "--cache",
                    cold_cache,
                    "-q",
                    "--force",
                    *flags,
                ),
                lambda: shutil.rmtree(cold_cache, ignore_errors=True),
            )

        contestants = [cold(None), cold(8), Contestant("sequential downloads", sequential)]
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
        "cold_speedup_8": ratio(times, seq, contestants[1].name),
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

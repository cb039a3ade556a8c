"""Benchmarks: every figure a median of several runs, every comparison run alternately.

Ratios are what we report, because the machine is shared and noisy: A and B run in turn
within one invocation, so both see the same noise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rattler  # noqa: E402
import urllib3  # noqa: E402

from tests.fixtures.channel import build, lock_for  # noqa: E402

BIN = Path(sys.executable).parent


class _SlowHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay = 0.05

    def do_GET(self) -> None:
        time.sleep(self.delay)  # the latency of a far-away server, per request
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path, delay: float) -> Iterator[str]:
    handler = type("H", (_SlowHandler,), {"delay": delay})
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


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(a: Callable[[], object], b: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall time of a and b, run alternately."""
    ta, tb = [], []
    for _ in range(runs):
        ta.append(timed(a))
        tb.append(timed(b))
    return statistics.median(ta), statistics.median(tb)


def run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)


def peak_rss_mb(*cmd: str | Path) -> float:
    """Peak RSS of a command and its children, measured by a fresh wrapper process."""
    probe = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *map(str, cmd)], check=True, capture_output=True, text=True
    ).stdout
    return int(out.split()[-1]) / 1024


def lock_urls(project: Path) -> list[str]:
    lock = rattler.LockFile.from_path(project / "pixi.lock")
    env = lock.environment("default")
    assert env is not None
    platform = next(p for p in env.platforms() if p.name == str(rattler.Subdir.current()))
    return [str(r.url) for r in env.conda_repodata_records_for_platform(platform) or []]


def bench_pack(runs: int) -> dict[str, object]:
    channel = build()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with serve(channel.root, 0.05) as url:
            project = lock_for(channel.lock_v6, url, tmp / "p").parent
            urls = lock_urls(project)
            http = urllib3.PoolManager()

            def sequential() -> None:
                for u in urls:
                    http.request("GET", u).data  # noqa: B018 - the download is the point

            counter = iter(range(10**6))

            def cold() -> None:
                n = next(counter)
                run(
                    BIN / "envpack", project, "-o", tmp / "cold.tar", "--cache", tmp / f"c{n}", "-q"
                )

            t_pack, t_seq = paired(cold, sequential, runs)
            results["cold_pack_s"] = t_pack
            results["sequential_download_s"] = t_seq
            results["cold_speedup_vs_sequential"] = t_seq / t_pack
            results["artifacts"] = len(urls)

            cache = tmp / "warm"
            run(BIN / "envpack", project, "-o", tmp / "warm.tar", "--cache", cache, "-q")
            files = [p for p in cache.rglob("*") if p.is_file()]
            listing = tmp / "files.txt"
            listing.write_text("\n".join(str(p.relative_to(cache)) for p in files) + "\n")

            def warm() -> None:
                run(BIN / "envpack", project, "-o", tmp / "warm.tar", "--cache", cache, "-q")

            def tar_zstd() -> None:
                run("tar", "-C", cache, "--zstd", "-cf", tmp / "tar.tar.zst", "-T", listing)

            t_warm, t_tar = paired(warm, tar_zstd, runs)
            results["warm_pack_s"] = t_warm
            results["tar_zstd_s"] = t_tar
            results["warm_ratio_vs_tar_zstd"] = t_warm / t_tar
            results["archive_bytes"] = (tmp / "warm.tar").stat().st_size
            results["tar_zstd_bytes"] = (tmp / "tar.tar.zst").stat().st_size
    return results


def bench_unpack(runs: int) -> dict[str, object]:
    channel = build()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with serve(channel.root, 0.0) as url:
            project = lock_for(channel.lock_v6, url, tmp / "p").parent
            run(BIN / "envpack", project, "-o", tmp / "env.tar", "--cache", tmp / "c", "-q")
            lock = rattler.LockFile.from_path(project / "pixi.lock")
            env = lock.environment("default")
            assert env is not None
            platform = next(p for p in env.platforms() if p.name == str(rattler.Subdir.current()))
            records = env.conda_repodata_records_for_platform(platform) or []
            # rattler.install's baseline reads from a local channel, not the network.
            local = [
                rattler.RepoDataRecord(
                    r, r.file_name, (channel.root / r.subdir / r.file_name).as_uri(), str(r.channel)
                )
                for r in records
            ]
            dest = tmp / "dest"

            def ours() -> None:
                shutil.rmtree(dest, ignore_errors=True)
                run(BIN / "envunpack", tmp / "env.tar", "-o", dest, "-q")

            def raw_rattler() -> None:
                shutil.rmtree(dest, ignore_errors=True)
                shutil.rmtree(tmp / "rc", ignore_errors=True)
                asyncio.run(
                    rattler.install(
                        local, target_prefix=dest / "env", cache_dir=tmp / "rc", show_progress=False
                    )
                )

            t_ours, t_rattler = paired(ours, raw_rattler, runs)
            results["envunpack_s"] = t_ours
            results["rattler_install_s"] = t_rattler
            results["ratio_vs_rattler_install"] = t_ours / t_rattler

            ours()
            run("tar", "-C", dest, "-cf", tmp / "installed.tar", "env")

            def untar() -> None:
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir()
                run("tar", "-C", dest, "-xf", tmp / "installed.tar")

            t_ours, t_tar = paired(ours, untar, runs)
            results["tar_x_installed_s"] = t_tar
            results["ratio_vs_tar_x"] = t_ours / t_tar
            shutil.rmtree(dest, ignore_errors=True)
            results["envunpack_peak_rss_mb"] = peak_rss_mb(
                BIN / "envunpack", tmp / "env.tar", "-o", dest, "-q"
            )
            results["archive_bytes"] = (tmp / "env.tar").stat().st_size
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["pack", "unpack", "all"])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    benches = {"pack": bench_pack, "unpack": bench_unpack}
    chosen = list(benches) if args.what == "all" else [args.what]
    report = {name: benches[name](args.runs) for name in chosen}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

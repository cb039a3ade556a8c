"""App files (`--entrypoint`): the launcher's warm overhead, the first run, the bytes added."""

from __future__ import annotations

import os
import shutil
import statistics
from pathlib import Path

from devtools.bench.common import BIN, FROZEN, NOT_BUILT, ROOT, frozen_available, say
from devtools.bench.measure import Contestant, median, race, ratio, sh
from devtools.bench.tables import Section, secs, table
from devtools.bench.workspace import Workspace


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

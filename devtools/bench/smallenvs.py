"""Unpack on small envs, each contestant a whole process: where start-up and imports count.

The fixture env (19 packages with CPython) with the output on a tmpfs, so the disk does not
hide the fixed costs, and the tiny env (7 packages, no python) on the bench's disk. The
baseline is raw rattler.install of the same package files by file:// URL.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from devtools.bench.common import frozen_available, say
from devtools.bench.measure import median, private_fs, race, ratio
from devtools.bench.tables import Section, mb, secs, table, times_x
from devtools.bench.unpack import RATTLER, unpack_contestants
from devtools.bench.workspace import Workspace, workspace

# (env kind, label in the table, key of its figures)
ENVS = (
    ("fixture", "fixture env, output on tmpfs", "unpack_fixture_tmpfs"),
    ("tiny", "tiny env", "unpack_tiny"),
)


def bench_small(tmp: Path, runs: int) -> Section:
    rows: list[list[str]] = []
    figures: dict[str, float | None] = {}
    bars: list[tuple[str, float]] = []
    notes: list[str] = []
    for kind, label, key in ENVS:
        say(f"small envs: {label}")
        (tmp / kind).mkdir(parents=True)
        with workspace(kind, tmp / kind) as ws:
            if kind == "fixture":
                with private_fs(tmp / "small-tmpfs", "2g") as (out, mounted):
                    if not mounted:
                        notes.append("No tmpfs (not root): the fixture env went to the disk.")
                    times, names = _race(ws, out, runs)
            else:
                times, names = _race(ws, tmp / kind / "out", runs)
        for name in names:
            rows.append(
                [
                    f"{label} ({ws.packages} packages, {mb(ws.artifact_bytes)})",
                    name,
                    secs(median(times, name)),
                    times_x(ratio(times, name, RATTLER)),
                ]
            )
            bars.append((f"{kind}: {name}", median(times, name)))
        figures[f"{key}_vs_rattler"] = ratio(times, "envunpack (venv)", RATTLER)
        if frozen_available():
            figures[f"{key}_frozen_vs_rattler"] = ratio(times, "envunpack (frozen)", RATTLER)
    lines = [
        "From an archive file to a runnable env, each contestant a process of its own",
        "(interpreter start and imports included). Raw rattler.install links the lock's",
        "records from the channel's files by file:// URL, its package cache on the same",
        "filesystem as the output (deleted untimed between runs).",
        *notes,
        "",
        *table(["env", "contestant", "median", "÷ raw rattler.install"], rows),
    ]
    return Section("Unpack, small envs", lines, figures, bars)


def _race(ws: Workspace, out: Path, runs: int) -> tuple[dict[str, list[float]], list[str]]:
    dest, cache = out / "unpack", out / "rattler-cache"

    def fresh() -> None:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)

    contestants = unpack_contestants(ws, dest, cache, fresh, fresh)
    times = race(contestants, runs)
    fresh()
    return times, [c.name for c in contestants]

"""Self-extracting executables: envpack's against its peers."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess

from devtools.bench.common import BIN, FROZEN, NOT_BUILT, frozen_available, say
from devtools.bench.measure import Contestant, median, peak, race, ratio, sh
from devtools.bench.tables import Section, mb, secs, table, times_x
from devtools.bench.workspace import Workspace


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
            ws.warm_pack(exe, "--create-executable", "--unpacker", FROZEN),
        ),
        Contestant(
            "envpack (warm cache)",
            ws.warm_pack(ws.tmp / "plain.tar"),
        ),
    ]

    def fresh() -> None:
        shutil.rmtree(dest, ignore_errors=True)

    check = ws.env_check(dest / "env")
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

"""The frozen unpacker: start-up and size of the static envunpack."""

from __future__ import annotations

from devtools.bench.common import BIN, FROZEN, NOT_BUILT, ROOT, frozen_available, say
from devtools.bench.measure import Contestant, median, race, ratio, sh
from devtools.bench.tables import Section, mb, secs, table, times_x


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

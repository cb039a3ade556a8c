"""Paths, the report's sections and the small helpers every benchmark section uses."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

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

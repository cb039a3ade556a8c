"""The report's pieces: a section of Markdown lines and figures, and how cells are written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


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

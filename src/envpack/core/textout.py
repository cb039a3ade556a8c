"""Aligned plain-text tables for listings: what a person reads, not what a script parses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def columns(
    rows: Iterable[Sequence[str]], *, right: frozenset[int] | set[int] = frozenset()
) -> list[str]:
    """Pad each column to its widest cell; columns in `right` (sizes) align right."""
    table = [list(r) for r in rows]
    if not table:
        return []
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines

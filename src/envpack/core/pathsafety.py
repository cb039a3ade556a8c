"""The one rule for a relative path that is about to be written below a root directory.

Archives, wheels and packages come from anywhere and we often run as root: a path that is
empty, holds a NUL or a backslash, is absolute (POSIX or a Windows drive) or climbs with
`..` could write anywhere on the machine, so it is refused, never sanitised. Callers add
what their format forbids besides (links in a tar, conda-meta/ in a package) and say it in
their own words.
"""

from __future__ import annotations

import enum
import re

_DRIVE = re.compile(r"[A-Za-z]:")


class Unsafe(enum.Enum):
    INVALID = "is not a valid path"
    ABSOLUTE = "is absolute"
    CLIMBS = "climbs out with '..'"


def unsafe(path: str) -> Unsafe | None:
    """Why `path` must not be written below a root, or None if it may."""
    if not path or "\x00" in path or "\\" in path:
        return Unsafe.INVALID
    if path.startswith("/") or _DRIVE.match(path):
        return Unsafe.ABSOLUTE
    if ".." in path.split("/"):
        return Unsafe.CLIMBS
    return None


def parts(path: str) -> list[str]:
    """The path's components, without the empty and `.` ones a tar writer may leave."""
    return [p for p in path.split("/") if p not in ("", ".")]


def is_plain_relative(path: str) -> bool:
    """Safe, and without empty or `.` components: what tools write in RECORDs and records."""
    return unsafe(path) is None and all(part not in ("", ".") for part in path.split("/"))

"""envpack.core.pathsafety: whatever passes stays below its root."""

from __future__ import annotations

import posixpath

from hypothesis import given
from hypothesis import strategies as st

from envpack.core.pathsafety import Unsafe, parts, unsafe

SEGMENTS = st.sampled_from(["a", "b.txt", ".", "..", "", "c:", "C:", "x\\y", "\x00", "ü"])


@given(st.lists(SEGMENTS, max_size=6), st.booleans())
def test_a_safe_path_never_leaves_the_root(segments: list[str], absolute: bool) -> None:
    path = ("/" if absolute else "") + "/".join(segments)
    if unsafe(path) is None:
        joined = posixpath.normpath(posixpath.join("/root", path))
        assert joined == "/root" or joined.startswith("/root/"), path


def test_each_reason() -> None:
    assert unsafe("") is Unsafe.INVALID
    assert unsafe("a\x00b") is Unsafe.INVALID
    assert unsafe("a\\b") is Unsafe.INVALID
    assert unsafe("/etc/passwd") is Unsafe.ABSOLUTE
    assert unsafe("C:/Windows") is Unsafe.ABSOLUTE
    assert unsafe("lib/../../etc") is Unsafe.CLIMBS
    assert unsafe("lib/./python3.11/x.py") is None
    assert parts("./lib//x") == ["lib", "x"]

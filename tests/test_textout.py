"""envpack.core.textout: aligned columns."""

from envpack.core.textout import columns


def test_columns_pad_and_right_align() -> None:
    lines = columns([("a", "1.00 MB"), ("long-name", "12.00 MB")], right={1})
    assert lines == ["a           1.00 MB", "long-name  12.00 MB"]
    assert columns([]) == []

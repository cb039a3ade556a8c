"""envpack.core.hashing: the one hash-while-reading loop."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from envpack.core.hashing import hash_file, hash_stream


def test_stream_file_limit_and_each(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # several chunks' worth
    seen: list[int] = []
    got = hash_stream(io.BytesIO(data), md5=True, each=lambda c: seen.append(len(c)))
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert got.size == sum(seen) == len(data)
    part = hash_stream(io.BytesIO(data), limit=1000)
    assert part.size == 1000 and part.sha256 == hashlib.sha256(data[:1000]).hexdigest()
    assert part.md5 == ""
    path = tmp_path / "f"
    path.write_bytes(data)
    assert hash_file(path) == hash_stream(io.BytesIO(data))

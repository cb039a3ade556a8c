"""Hashing while reading, in one place: a file or a stream, sha256 (and md5 when asked).

Every check of a package or archive runs through here, so every one reads in the same
chunks and none forgets the size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from envpack.core.layout import CHUNK


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class Digests:
    sha256: str
    md5: str  # "" unless asked for
    size: int


def hash_stream(
    source: Readable,
    *,
    md5: bool = False,
    each: Callable[[bytes], object] | None = None,
    limit: int | None = None,
) -> Digests:
    """Read `source` to its end (or `limit` bytes), hashing; `each` sees every chunk.

    md5 only when asked: where the lock has a sha256, a second hash doubles a warm pack's cost.
    """
    sha = hashlib.sha256()
    second = hashlib.md5(usedforsecurity=False) if md5 else None
    size = 0
    while limit is None or size < limit:
        chunk = source.read(CHUNK if limit is None else min(CHUNK, limit - size))
        if not chunk:
            break
        sha.update(chunk)
        if second is not None:
            second.update(chunk)
        if each is not None:
            each(chunk)
        size += len(chunk)
    return Digests(sha.hexdigest(), second.hexdigest() if second is not None else "", size)


def hash_file(path: Path, *, md5: bool = False) -> Digests:
    with path.open("rb") as fh:
        return hash_stream(fh, md5=md5)

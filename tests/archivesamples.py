"""Archives for the reader's and the writer's tests: a set of members, written and read back."""

from __future__ import annotations

import io
import random
from typing import BinaryIO

import zstandard

from envpack.core.archive import ZSTD_MAGIC, iter_members
from envpack.packer.archivewrite import ArchiveWriter, Compression

MEMBERS: list[tuple[str, bytes]] = [
    ("envpack.json", b'{"format_version": 1}\n'),
    ("pixi-pack.json", b'{"version": "1"}\n'),
    ("channel/linux-64/repodata.json", b"{}" * 500),
    ("channel/linux-64/pkg-1.0-0.conda", random.Random(1).randbytes(70_000)),
    ("channel/noarch/empty-1.0-0.tar.bz2", b""),
    ("pypi/" + "long_name_" * 15 + "-1.0-py3-none-any.whl", b"wheel" * 1000),
]


def write_archive(compression: Compression, members: list[tuple[str, bytes]] = MEMBERS) -> bytes:
    out = io.BytesIO()
    with ArchiveWriter(out, compression) as writer:
        for name, data in members:
            writer.add_bytes(name, data)
    return out.getvalue()


def read_archive(data: bytes | BinaryIO) -> list[tuple[str, bytes]]:
    raw = io.BytesIO(data) if isinstance(data, bytes) else data
    return [(m.name, m.stream.read()) for m in iter_members(raw)]


def plain_tar(data: bytes) -> bytes:
    if data.startswith(ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data

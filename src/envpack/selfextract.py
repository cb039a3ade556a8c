"""Self-extracting files: the static envunpack, the archive appended raw, then a trailer.

    [envunpack binary][archive bytes][trailer: sha256 | offset | length | version | magic]

No base64 and no shell wrapper: the unpacker finds the trailer at the end of its own file,
checks the payload's sha256 in one streaming pass, then unpacks straight from the file.
Nothing is copied to /tmp and memory stays flat whatever the payload's size.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from envpack.errors import ArchiveError, EnvpackError

MAGIC = b"envpack-sfx\n"
VERSION = 1
_TRAILER = struct.Struct("<32sQQI12s")  # little-endian, 64 bytes
TRAILER_SIZE = _TRAILER.size
_CHUNK = 1 << 20
_ARCH = {"linux-64": "x86_64", "linux-aarch64": "aarch64"}


@dataclass(frozen=True)
class Payload:
    path: Path
    offset: int
    length: int
    sha256: bytes


def trailer(sha256: bytes, offset: int, length: int) -> bytes:
    return _TRAILER.pack(sha256, offset, length, VERSION, MAGIC)


def own_executable() -> Path:
    # staticx runs a copy of the program extracted to /tmp; the file the user started (the
    # one with the payload) is named in STATICX_PROG_PATH.
    return Path(os.environ.get("STATICX_PROG_PATH") or sys.executable)


def find_payload(path: Path) -> Payload | None:
    """The payload described by `path`'s trailer, or None if `path` has no trailer at all."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, io.SEEK_END)
            if size < TRAILER_SIZE:
                return None
            fh.seek(size - TRAILER_SIZE)
            raw = fh.read(TRAILER_SIZE)
    except OSError:
        return None
    sha256, offset, length, version, magic = _TRAILER.unpack(raw)
    if magic != MAGIC:
        return None
    if version != VERSION:
        raise ArchiveError(
            f"{path.name} is a self-extracting file of format {version}, "
            f"this envunpack reads format {VERSION}"
        )
    # The trailer must describe exactly the bytes before it: anything else is truncation
    # or tampering, and we refuse before reading a byte of the payload.
    if offset + length + TRAILER_SIZE != size:
        raise ArchiveError(
            f"{path.name} is truncated or was modified: its trailer describes "
            f"{offset + length + TRAILER_SIZE} bytes but the file has {size}"
        )
    return Payload(path, offset, length, sha256)


def verify(payload: Payload) -> None:
    """Hash the payload in one streaming pass before anything is unpacked."""
    sha = hashlib.sha256()
    with payload.path.open("rb") as fh:
        fh.seek(payload.offset)
        left = payload.length
        while left:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                raise ArchiveError(f"{payload.path.name} is truncated")
            sha.update(chunk)
            left -= len(chunk)
    if sha.digest() != payload.sha256:
        raise ArchiveError(
            f"{payload.path.name} is corrupt: its payload's sha256 is {sha.hexdigest()}, "
            f"the trailer says {payload.sha256.hex()}"
        )


class PayloadReader(io.RawIOBase):
    """Reads exactly the payload's bytes from the file, never past them."""

    def __init__(self, payload: Payload) -> None:
        self._file = payload.path.open("rb")
        self._file.seek(payload.offset)
        self._left = payload.length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._left:
            return 0
        data = self._file.read(min(len(buffer), self._left))
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


def open_payload(payload: Payload) -> BinaryIO:
    return io.BufferedReader(PayloadReader(payload), buffer_size=_CHUNK)


def find_unpacker(platform: str, explicit: Path | None, search: list[Path]) -> Path:
    """The static envunpack to embed for `platform`: --unpacker, else a built one."""
    if explicit is not None:
        if not explicit.is_file():
            raise EnvpackError(f"--unpacker {explicit}: no such file")
        return explicit
    arch = _ARCH.get(platform)
    if arch is None:
        raise EnvpackError(f"no envunpack exists for {platform}; self-extracting files need Linux")
    name = f"envunpack-{arch}-linux"
    for directory in search:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise EnvpackError(
        f"no {name} to embed: build it with `scripts/build-unpacker --arch {arch}` "
        "(it lands in dist/), or pass --unpacker PATH"
    )

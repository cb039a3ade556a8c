"""Self-extracting files: the static envunpack, the archive appended raw, then a trailer.

    [envunpack binary][head][archive bytes][trailer: sha256 | offset | length | version | magic]

The head repeats the trailer (with its own magic) where the program's ELF bytes end, so a
file cut short, which has lost its trailer, can still say how long it should be.

No base64 and no shell wrapper: the unpacker finds the trailer at the end of its own file,
checks the payload's sha256 in one streaming pass, then unpacks straight from the file.
Nothing is copied to /tmp and memory stays flat whatever the payload's size.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from envpack.core import elf
from envpack.core.errors import ArchiveError, EnvpackError
from envpack.core.hashing import hash_stream
from envpack.core.layout import ARCHES, CHUNK

MAGIC = b"envpack-sfx\n"
HEAD_MAGIC = b"envpack-sfxh"
VERSION = 2  # 2 added the head; 1 files (no head) are still read
_READS = (1, 2)
_TRAILER = struct.Struct("<32sQQI12s")  # little-endian, 64 bytes
TRAILER_SIZE = _TRAILER.size
# Every static envunpack carries its compressed rattler extension in this ELF section
# (freeze/freeze.sh), which no other program has: it marks the file as ours.
UNPACKER_SECTION = b".envpack.rattler"


@dataclass(frozen=True)
class Payload:
    path: Path
    offset: int
    length: int
    sha256: bytes


def trailer(sha256: bytes, offset: int, length: int) -> bytes:
    return _TRAILER.pack(sha256, offset, length, VERSION, MAGIC)


def head(sha256: bytes, offset: int, length: int) -> bytes:
    """The copy of the trailer at the payload's start; all zeros until the payload is known."""
    return _TRAILER.pack(sha256, offset, length, VERSION, HEAD_MAGIC)


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
    if version not in _READS:
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


def truncation(path: Path) -> str | None:
    """Why `path`, a program with no trailer, looks like a cut self-extracting file; or None."""
    try:
        program_end = elf.end(path)
        size = path.stat().st_size
        if program_end is None or size <= program_end:
            return None  # a plain program (the unpacker itself): nothing was appended
        if elf.section(path, UNPACKER_SECTION) is None:
            return None  # some other program: not ours to judge
        with path.open("rb") as fh:
            fh.seek(program_end)
            raw = fh.read(TRAILER_SIZE)
    except (OSError, struct.error):
        return None
    if len(raw) == TRAILER_SIZE:
        _, offset, length, _, magic = _TRAILER.unpack(raw)
        if magic == HEAD_MAGIC and length:
            return (
                f"{path.name} is truncated: it has {size} bytes, a complete file has "
                f"{offset + length + TRAILER_SIZE}; copy it again"
            )
    return (
        f"{path.name} is truncated or was modified: {size - program_end} bytes follow the "
        "envunpack program but the trailer that ends a complete file is missing; copy it again"
    )


def verify(payload: Payload) -> None:
    """Hash the payload in one streaming pass before anything is unpacked."""
    with payload.path.open("rb") as fh:
        fh.seek(payload.offset)
        got = hash_stream(fh, limit=payload.length)
    if got.size < payload.length:
        raise ArchiveError(f"{payload.path.name} is truncated")
    if got.sha256 != payload.sha256.hex():
        raise ArchiveError(
            f"{payload.path.name} is corrupt: its payload's sha256 is {got.sha256}, "
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
    return io.BufferedReader(PayloadReader(payload), buffer_size=CHUNK)


def find_unpacker(platform: str, explicit: Path | None, search: list[Path]) -> Path:
    """The static envunpack to embed for `platform`: --unpacker, else a built one."""
    arch = ARCHES.get(platform)
    if arch is None:
        raise EnvpackError(f"no envunpack exists for {platform}; self-extracting files need Linux")
    if explicit is not None:
        if not explicit.is_file():
            raise EnvpackError(f"--unpacker {explicit}: no such file")
        check_unpacker(explicit, arch)
        return explicit
    name = f"envunpack-{arch}-linux"
    for directory in search:
        candidate = directory / name
        if candidate.is_file():
            check_unpacker(candidate, arch)
            return candidate
    raise EnvpackError(
        f"no {name} to embed: download it from envpack's releases (or build it from a "
        f"source checkout with `scripts/build-unpacker --arch {arch}`), then pass "
        "--unpacker PATH or put it in a directory named by $ENVPACK_UNPACKER_DIR"
    )


def check_unpacker(path: Path, arch: str) -> None:
    """Refuse to embed anything but a static envunpack for the archive's architecture.

    The result would run on the target as the archive's only code; a wrong file is found
    there at the worst moment, so it is found here.
    """
    try:
        found = elf.machine(path)
        marked = elf.section(path, UNPACKER_SECTION) is not None
    except OSError as exc:
        raise EnvpackError(f"--unpacker {path}: cannot read it: {exc.strerror}") from None
    if found is None:
        raise EnvpackError(
            f"--unpacker {path} is not an executable (ELF) file; "
            f"give the static envunpack-{arch}-linux"
        )
    if found != arch:
        raise EnvpackError(
            f"--unpacker {path} is built for {found}, but the archive is for {arch}; "
            f"give envunpack-{arch}-linux"
        )
    if not marked:
        raise EnvpackError(
            f"--unpacker {path} is not a static envunpack (it has no "
            f"{UNPACKER_SECTION.decode()} section); give envunpack-{arch}-linux"
        )

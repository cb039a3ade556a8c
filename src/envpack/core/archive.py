"""The archive container's safe streaming reader: a tar, zstd (one frame or many) or plain.

Reading never seeks back, so it works on pipes, and every member is checked before a single
byte of it is used. The writer is the packer's (packer/archivewrite.py).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, Protocol

import zstandard

from envpack.core.errors import ArchiveError
from envpack.core.layout import CHUNK
from envpack.core.pathsafety import Unsafe, unsafe
from envpack.core.pathsafety import parts as path_parts

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# tar pads to 10 KiB records (GNU tar, Python) or more with large blocking factors; 1 MiB
# of zeros after the end marker is generous, more is a bomb feeding on our patience.
_TRAILING_LIMIT = 1 << 20


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class Member:
    """A regular file of the archive, readable once, in archive order."""

    name: str
    size: int
    stream: Readable


_MEMBER_WORDS = {
    Unsafe.INVALID: "invalid name",
    Unsafe.ABSOLUTE: "absolute path",
    Unsafe.CLIMBS: "'..' component",
}


# Archives come from anywhere and we often run as root: a member that is absolute, climbs
# with `..`, is a link (which could redirect a later write), a device, a FIFO, or carries
# setuid/setgid bits is refused outright rather than sanitised.
def check_member(info: tarfile.TarInfo) -> str:
    """Return the member's normalised name, or raise if it is anything but a safe plain path."""
    name = info.name
    why = unsafe(name)
    if why is not None:
        raise ArchiveError(f"unsafe archive member {name!r}: {_MEMBER_WORDS[why]}")
    parts = path_parts(name)
    if not parts:
        raise ArchiveError(f"unsafe archive member {name!r}: empty path")
    if info.issym() or info.islnk():
        raise ArchiveError(f"unsafe archive member {name!r}: links are not allowed")
    if not (info.isreg() or info.isdir()):
        raise ArchiveError(f"unsafe archive member {name!r}: devices and FIFOs are not allowed")
    if info.mode & 0o6000:
        raise ArchiveError(f"unsafe archive member {name!r}: setuid/setgid bit set")
    return "/".join(parts)


class _Prefixed(io.RawIOBase):
    """Replays bytes already read from a pipe, then reads on: sniffing without seeking."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Counting(io.RawIOBase):
    """Counts what the tar reader consumes, to tell a complete tar from a truncated one."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)

    def drain(self, limit: int) -> None:
        """Read to the end, but refuse more than `limit` bytes: that is no tar padding."""
        start = self.count
        while self.read(CHUNK):
            if self.count - start > limit:
                raise ArchiveError("archive has unexpected data after its end marker")


class Guarded(io.RawIOBase):
    """A member's data: read errors of the container become ArchiveError, not tracebacks."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._inner.read(size)
        except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
            raise ArchiveError(f"archive is corrupt or truncated ({exc})") from None

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# What people hand us by mistake, by their magic bytes: said in words, not "corrupt".
_FOREIGN = (
    (b"\x1f\x8b", "a gzip file (a conda-pack .tar.gz?)"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"PK\x03\x04", "a zip file (a .conda package or a wheel?)"),
    (b"\x7fELF", "a program (ELF), not an archive"),
)
_TAR_BLOCK = 512


def _refuse_foreign(head: bytes) -> None:
    for magic, what in _FOREIGN:
        if head.startswith(magic):
            raise ArchiveError(
                f"this is {what}; envunpack reads the .tar archives envpack or pixi-pack write"
            )
    if _looks_like_text(head[:_TAR_BLOCK]):
        raise ArchiveError(
            "this is a text file, not an archive; envunpack reads the .tar archives "
            "envpack or pixi-pack write"
        )


def _looks_like_text(block: bytes) -> bool:
    # Every tar header block is NUL-padded, so printable UTF-8 is never one.
    text = block.decode("utf-8", errors="ignore")
    return (
        bool(block)
        and len(text) >= len(block) // 2
        and all(c.isprintable() or c in "\t\r\n" for c in text)
    )


def open_stream(raw: BinaryIO) -> IO[bytes]:
    """Return the decompressed tar stream, choosing zstd or plain tar by magic bytes."""
    head = raw.read(_TAR_BLOCK)
    if not head.startswith(ZSTD_MAGIC):
        _refuse_foreign(head)
    stream = io.BufferedReader(_Prefixed(head, raw), buffer_size=CHUNK)
    if head.startswith(ZSTD_MAGIC):
        # stream_reader bounds memory by the read size, whatever the compression ratio, so a
        # zstd bomb cannot exhaust memory; its frame checksum is checked when the frame ends.
        return zstandard.ZstdDecompressor().stream_reader(
            stream, read_across_frames=True, closefd=False
        )
    return stream


def iter_members(raw: BinaryIO) -> Iterator[Member]:
    """Yield the archive's files in order; directories are skipped, anything unsafe raises.

    The whole stream is read to its end, even past the tar's end marker, so that the zstd
    checksum of the last frame is verified before the caller is told the archive is done.
    """
    seen: set[str] = set()
    try:
        counter = _Counting(open_stream(raw))
        with tarfile.open(fileobj=io.BufferedReader(counter), mode="r|") as tar:
            for info in tar:
                name = check_member(info)
                if name in seen:
                    raise ArchiveError(f"archive member {name!r} appears twice")
                seen.add(name)
                if info.isdir():
                    continue
                stream = tar.extractfile(info)
                if stream is None:  # pragma: no cover - regular files always have data
                    raise ArchiveError(f"archive member {name!r} has no data")
                yield Member(name=name, size=info.size, stream=Guarded(stream))
            end = tar.offset
        counter.drain(_TRAILING_LIMIT)
        # A tar ends with two zero blocks; without them it was cut at a header boundary.
        if counter.count < end + 2 * tarfile.BLOCKSIZE:
            raise ArchiveError("archive is truncated (no end-of-archive marker)")
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise ArchiveError(f"archive is corrupt or truncated ({exc})") from None

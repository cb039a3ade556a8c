"""The archive container: a deterministic tar, zstd or plain, and a safe streaming reader.

Writing is reproducible (sorted by the caller, mtime 0, uid/gid 0, fixed modes, no user
names). Reading never seeks back, so it works on pipes, and every member is checked before a
single byte of it is used.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Literal, Protocol, cast

import zstandard

from envpack.core.errors import ArchiveError
from envpack.core.layout import CHUNK
from envpack.core.pathsafety import Unsafe, unsafe
from envpack.core.pathsafety import parts as path_parts

Compression = Literal["zstd", "none"]
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DEFAULT_LEVEL = 3
_FILE_MODE = 0o644
# tar pads to 10 KiB records (GNU tar, Python) or more with large blocking factors; 1 MiB
# of zeros after the end marker is generous, more is a bomb feeding on our patience.
_TRAILING_LIMIT = 1 << 20
# A pack written as a folder is read in the order the archive writer adds these.


# Where an archive goes (a comment, not a docstring: the frozen envunpack carries docstrings).
class Writable(Protocol):
    """A file, stdout, or a hashing wrapper."""

    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


class ArchiveWriter:
    """Append members to a tar stream. The caller decides the order; the bytes are stable."""

    def __init__(
        self, out: Writable, compression: Compression = "zstd", level: int = DEFAULT_LEVEL
    ) -> None:
        self._zstd: zstandard.ZstdCompressionWriter | None = None
        # tarfile's stream mode and zstd's writer only ever call write() and flush().
        sink = cast(IO[bytes], out)
        if compression == "zstd":
            # write_checksum: a flipped byte anywhere in the payload fails decompression.
            # threads=-1 keeps multi-threaded mode on every machine, whose output does not
            # depend on the worker count, so archives stay byte-identical across hosts.
            compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=-1)
            self._zstd = compressor.stream_writer(sink, closefd=False)
            sink = self._zstd
        # 1 MiB copies instead of tarfile's 16 KiB, and 1 MiB stream writes instead of 10 KiB
        # records: tarfile's stream re-slices its whole buffer per record, quadratic in the
        # copy size (half of a warm pack's time). The bytes are the same: only the writes
        # into the compressor are cut differently, and zstd's frame does not depend on that.
        # (open() passes copybufsize on to TarFile; typeshed's overloads do not list it.)
        self._tar = tarfile.open(  # type: ignore[call-overload]
            fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, copybufsize=CHUNK, bufsize=CHUNK
        )

    def add_bytes(self, name: str, data: bytes) -> None:
        self._tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))

    def add_file(self, name: str, path: Path) -> None:
        with path.open("rb") as fh:
            size = fh.seek(0, io.SEEK_END)
            fh.seek(0)
            self.add_stream(name, size, fh)

    def add_stream(self, name: str, size: int, source: Readable) -> None:
        self._tar.addfile(_tarinfo(name, size), source)

    def close(self) -> None:
        self._tar.close()
        if self._zstd is not None:
            self._zstd.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = _FILE_MODE
    # Fixed metadata: nothing about the packing machine or moment leaks into the bytes.
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


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
# setuid/setgid bits is refused outright rather than sanitised. (A comment, not a docstring,
# to pay for the writer's add_stream in the frozen envunpack.)
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

"""The archive container: deterministic writing, magic-byte detection, streaming, safe members."""

from __future__ import annotations

import contextlib
import io
import os
import random
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from envpack.core.archive import ZSTD_MAGIC, ArchiveWriter, Compression, check_member, iter_members
from envpack.core.errors import ArchiveError

MEMBERS: list[tuple[str, bytes]] = [
    ("envpack.json", b'{"format_version": 1}\n'),
    ("pixi-pack.json", b'{"version": "1"}\n'),
    ("channel/linux-64/repodata.json", b"{}" * 500),
    ("channel/linux-64/pkg-1.0-0.conda", random.Random(1).randbytes(70_000)),
    ("channel/noarch/empty-1.0-0.tar.bz2", b""),
    ("pypi/" + "long_name_" * 15 + "-1.0-py3-none-any.whl", b"wheel" * 1000),
]


def _write(compression: Compression, members: list[tuple[str, bytes]] = MEMBERS) -> bytes:
    out = io.BytesIO()
    with ArchiveWriter(out, compression) as writer:
        for name, data in members:
            writer.add_bytes(name, data)
    return out.getvalue()


def _read(data: bytes | BinaryIO) -> list[tuple[str, bytes]]:
    raw = io.BytesIO(data) if isinstance(data, bytes) else data
    return [(m.name, m.stream.read()) for m in iter_members(raw)]


def _plain_tar(data: bytes) -> bytes:
    if data.startswith(ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data


# --- writing --------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_writer_is_deterministic(compression: Compression) -> None:
    assert _write(compression) == _write(compression)


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_add_file_equals_add_bytes_whatever_the_source_file(
    tmp_path: Path, compression: Compression
) -> None:
    # A file's own mtime, mode and owner must not reach the archive.
    sources = []
    for i, (_, data) in enumerate(MEMBERS):
        path = tmp_path / f"src{i}"
        path.write_bytes(data)
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
        path.chmod(0o600 if i % 2 else 0o755)
        sources.append(path)
    out = io.BytesIO()
    with ArchiveWriter(out, compression) as writer:
        for (name, _), path in zip(MEMBERS, sources, strict=True):
            writer.add_file(name, path)
    assert out.getvalue() == _write(compression)


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_member_metadata_is_fixed(compression: Compression) -> None:
    with tarfile.open(fileobj=io.BytesIO(_plain_tar(_write(compression))), mode="r:") as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == [name for name, _ in MEMBERS]  # caller's order kept
        for info, (_, data) in zip(infos, MEMBERS, strict=True):
            assert info.isreg()
            assert info.mtime == 0
            assert (info.uid, info.gid) == (0, 0)
            assert (info.uname, info.gname) == ("", "")
            assert info.mode == 0o644
            assert info.size == len(data)
            extracted = tar.extractfile(info)
            assert extracted is not None
            assert extracted.read() == data


def test_zstd_output_is_zstd_and_none_is_a_plain_tar() -> None:
    zst = _write("zstd")
    plain = _write("none")
    assert zst.startswith(ZSTD_MAGIC)
    assert not plain.startswith(ZSTD_MAGIC)
    assert len(plain) % 512 == 0
    assert _plain_tar(zst) == plain  # same tar inside, only the compression differs
    # Readable by any tar reader, including the stdlib's own auto-detection.
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        assert len(tar.getnames()) == len(MEMBERS)


def test_zstd_frame_carries_a_checksum() -> None:
    params = zstandard.get_frame_parameters(_write("zstd"))
    assert params.has_checksum


def test_compression_level_changes_nothing_but_size() -> None:
    fast = io.BytesIO()
    with ArchiveWriter(fast, "zstd", level=1) as writer:
        for name, data in MEMBERS:
            writer.add_bytes(name, data)
    assert _read(fast.getvalue()) == _read(_write("zstd"))


class _CountingSink(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes, /) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


def test_a_large_member_reaches_the_sink_in_large_writes(tmp_path: Path) -> None:
    # tarfile's stream cuts into 10 KiB records by default, re-slicing its buffer for each:
    # 8 MiB would be ~800 writes, and the re-slicing was half of a warm pack's time.
    big = tmp_path / "big.conda"
    big.write_bytes(random.Random(1).randbytes(8 << 20))
    sink = _CountingSink()
    with ArchiveWriter(sink, "none") as writer:
        writer.add_file("channel/noarch/big.conda", big)
    assert sink.writes <= 16, sink.writes
    assert _read(sink.getvalue()) == [("channel/noarch/big.conda", big.read_bytes())]


# --- reading --------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_round_trip(compression: Compression) -> None:
    assert _read(_write(compression)) == MEMBERS


@pytest.mark.parametrize(
    ("compression", "name"),
    [("zstd", "env.tar"), ("none", "env.tar.zst"), ("zstd", "env"), ("none", "env.zstd")],
)
def test_format_is_detected_by_magic_bytes_not_name(
    tmp_path: Path, compression: Compression, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(_write(compression))
    with path.open("rb") as fh:
        assert _read(fh) == MEMBERS


class _Unseekable(io.RawIOBase):
    """A stream that refuses to seek or tell, like a pipe or a socket."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        # Short reads, as a pipe gives them.
        chunk = self._inner.read(min(len(buffer), 777))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, whence: int = 0) -> int:
        raise OSError("seek on an unseekable stream")

    def tell(self) -> int:
        raise OSError("tell on an unseekable stream")


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_reads_from_a_stream_that_cannot_seek(compression: Compression) -> None:
    stream = _Unseekable(_write(compression))
    assert _read(stream) == MEMBERS  # type: ignore[arg-type]


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_reads_from_a_real_pipe(compression: Compression) -> None:
    data = _write(compression)
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as sink:
            for start in range(0, len(data), 4096):
                sink.write(data[start : start + 4096])

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb") as source:
        assert not source.seekable()
        assert _read(source) == MEMBERS
    thread.join(timeout=10)


def test_members_stream_in_order_without_buffering_the_archive() -> None:
    seen = []
    for member in iter_members(io.BytesIO(_write("zstd"))):
        seen.append((member.name, member.size))
        assert len(member.stream.read()) == member.size
    assert seen == [(name, len(data)) for name, data in MEMBERS]


def test_directories_are_skipped() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.addfile(_info("channel", tarfile.DIRTYPE, mode=0o755))
        data = b"payload"
        tar.addfile(_info("channel/x.conda", size=len(data)), io.BytesIO(data))
    assert _read(out.getvalue()) == [("channel/x.conda", b"payload")]


def test_dot_slash_names_are_normalised() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.addfile(_info("./envpack.json", size=2), io.BytesIO(b"{}"))
        tar.addfile(_info("channel//./x.conda", size=1), io.BytesIO(b"x"))
    assert _read(out.getvalue()) == [("envpack.json", b"{}"), ("channel/x.conda", b"x")]


# --- corruption -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a tar at all" * 100,
        ZSTD_MAGIC + b"garbage after the magic" * 10,
        ZSTD_MAGIC,
        b"\x00" * 10,
    ],
    ids=["empty", "text", "zstd-garbage", "zstd-magic-only", "short-zeros"],
)
def test_garbage_is_an_archive_error(data: bytes) -> None:
    with pytest.raises(ArchiveError):
        _read(data)


def _data_offset(plain: bytes, name: str) -> int:
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
        return tar.getmember(name).offset_data


BIG = "channel/linux-64/pkg-1.0-0.conda"


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_truncated_archive_is_an_archive_error(compression: Compression) -> None:
    # Iterating only (members skipped unread): the reader itself must notice the cut.
    plain = _write("none")
    data = plain[: _data_offset(plain, BIG) + 30_000]
    if compression == "zstd":
        data = _write("zstd")[: len(_write("zstd")) // 2]
    with pytest.raises(ArchiveError):
        for _ in iter_members(io.BytesIO(data)):
            pass


def test_plain_tar_cut_inside_a_header_is_an_archive_error() -> None:
    plain = _write("none")
    cut = _data_offset(plain, BIG) - 300  # inside BIG's 512-byte header
    with pytest.raises(ArchiveError):
        for _ in iter_members(io.BytesIO(plain[:cut])):
            pass


def test_truncated_member_data_is_an_archive_error_when_read() -> None:
    plain = _write("none")
    data = plain[: _data_offset(plain, BIG) + 30_000]
    with pytest.raises(ArchiveError):
        _read(data)


def test_truncated_zstd_member_data_is_an_archive_error_when_read() -> None:
    data = _write("zstd")
    with pytest.raises(ArchiveError):
        _read(data[: len(data) // 2])


def test_flipped_byte_inside_compressed_member_is_detected() -> None:
    # The middle of the incompressible package: decoding succeeds, only the checksum can tell.
    data = bytearray(_write("zstd"))
    data[len(data) // 2] ^= 0x01
    with pytest.raises(ArchiveError):
        _read(bytes(data))


def test_every_single_flipped_byte_is_detected() -> None:
    data = _write("zstd", MEMBERS[:4])
    original = _read(data)
    missed = []
    for position in range(len(data)):
        corrupt = bytearray(data)
        corrupt[position] ^= 0x01
        try:
            result = _read(bytes(corrupt))
        except ArchiveError:
            continue
        if result != original:  # a flip that decodes to the same content is harmless
            missed.append(position)
    assert missed == [], f"{len(missed)} of {len(data)} flipped bytes went unnoticed"


@pytest.mark.xfail(
    strict=True,
    reason="known limitation: a zstd archive cut inside its final 4-byte checksum reads "
    "without error (zstandard's stream_reader, which bounds memory, does not report it); "
    "every artifact is still verified against the manifest",
)
def test_missing_zstd_checksum_is_detected() -> None:
    data = _write("zstd")
    with pytest.raises(ArchiveError):
        _read(data[:-2])


# --- unsafe members ---------------------------------------------------------------------------


def _info(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    *,
    size: int = 0,
    mode: int = 0o644,
    linkname: str = "",
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.linkname = linkname
    return info


def _crafted_tar(
    tmp_path: Path, infos: list[tarfile.TarInfo], compression: Compression = "none"
) -> Path:
    """A real tar file on disk, with the given headers and a payload for each regular file."""
    plain = tmp_path / "crafted.tar"
    with tarfile.open(plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in infos:
            payload = io.BytesIO(b"x" * info.size) if info.isreg() else None
            tar.addfile(info, payload)
    if compression == "none":
        return plain
    zst = tmp_path / "crafted.tar.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    return zst


UNSAFE: dict[str, Callable[[], list[tarfile.TarInfo]]] = {
    "absolute": lambda: [_info("/etc/passwd", size=3)],
    "absolute-nested": lambda: [_info("//channel/x.conda", size=3)],
    "dotdot": lambda: [_info("../escape", size=3)],
    "dotdot-inner": lambda: [_info("channel/../../escape", size=3)],
    "dotdot-dir": lambda: [_info("channel/..", tarfile.DIRTYPE, mode=0o755)],
    "backslash": lambda: [_info("channel\\..\\x", size=1)],
    "symlink": lambda: [_info("channel", tarfile.SYMTYPE, linkname="/etc")],
    "symlink-relative": lambda: [_info("a.conda", tarfile.SYMTYPE, linkname="b.conda")],
    "hardlink": lambda: [_info("x", tarfile.LNKTYPE, linkname="/etc/shadow")],
    "hardlink-inside": lambda: [_info("a", size=1), _info("b", tarfile.LNKTYPE, linkname="a")],
    "chardev": lambda: [_info("dev/null", tarfile.CHRTYPE)],
    "blockdev": lambda: [_info("dev/sda", tarfile.BLKTYPE)],
    "fifo": lambda: [_info("pipe", tarfile.FIFOTYPE)],
    "setuid": lambda: [_info("bin/tool", size=4, mode=0o4755)],
    "setgid": lambda: [_info("bin/tool", size=4, mode=0o2755)],
    "duplicate": lambda: [_info("envpack.json", size=2), _info("envpack.json", size=2)],
    "duplicate-normalised": lambda: [_info("a/b", size=1), _info("./a//b", size=1)],
    "duplicate-after-others": lambda: [
        _info("a", size=1),
        _info("b", size=1),
        _info("a", size=5),
    ],
}


@pytest.mark.parametrize("compression", ["none", "zstd"])
@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_member_is_refused(tmp_path: Path, case: str, compression: Compression) -> None:
    path = _crafted_tar(tmp_path, UNSAFE[case](), compression)
    with path.open("rb") as fh, pytest.raises(ArchiveError):
        _read(fh)


def test_unsafe_member_is_refused_before_the_next_is_yielded(tmp_path: Path) -> None:
    path = _crafted_tar(
        tmp_path, [_info("ok", size=1), _info("../evil", size=1), _info("later", size=1)]
    )
    names = []
    with path.open("rb") as fh, pytest.raises(ArchiveError, match="evil"):
        for member in iter_members(fh):
            names.append(member.name)
    assert names == ["ok"]


@pytest.mark.parametrize(
    ("info", "why"),
    [
        (_info("/abs"), "absolute"),
        (_info("a/../../b"), "'..'"),
        (_info("l", tarfile.SYMTYPE, linkname="x"), "link"),
        (_info("l", tarfile.LNKTYPE, linkname="x"), "link"),
        (_info("f", tarfile.FIFOTYPE), "FIFO"),
        (_info("c", tarfile.CHRTYPE), "device"),
        (_info("s", mode=0o6755), "setuid"),
        (_info(""), "invalid"),
        (_info("./"), "empty"),
        (_info("a\x00b"), "invalid"),
    ],
)
def test_check_member_says_why(info: tarfile.TarInfo, why: str) -> None:
    with pytest.raises(ArchiveError, match=why):
        check_member(info)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("envpack.json", "envpack.json"),
        ("./envpack.json", "envpack.json"),
        ("channel/linux-64/x.conda", "channel/linux-64/x.conda"),
        ("channel//linux-64/./x.conda", "channel/linux-64/x.conda"),
        ("channel/", "channel"),
        ("..a/b..", "..a/b.."),
    ],
)
def test_check_member_normalises_safe_names(name: str, expected: str) -> None:
    assert check_member(_info(name)) == expected


member_names = st.lists(
    st.sampled_from(["..", ".", "", "a", "channel", "..x", "x..", "\\", "/", "\x00", "é"])
    | st.text(max_size=8),
    max_size=6,
).map("/".join) | st.text(max_size=30)

member_types = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.FIFOTYPE,
        tarfile.CONTTYPE,
    ]
)


@settings(max_examples=1000, deadline=None)
@given(member_names, member_types, st.integers(min_value=0, max_value=0o7777))
def test_check_member_never_returns_an_unsafe_path(name: str, kind: bytes, mode: int) -> None:
    info = _info(name, kind, mode=mode)
    try:
        safe = check_member(info)
    except ArchiveError:
        return
    assert safe
    assert not safe.startswith("/")
    assert ".." not in safe.split("/")
    assert "" not in safe.split("/")
    assert "\x00" not in safe and "\\" not in safe
    assert info.isreg() or info.isdir()
    assert not mode & 0o6000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(member_names, member_types), min_size=1, max_size=4))
def test_random_real_tars_only_raise_archive_errors(
    entries: list[tuple[str, bytes]],
) -> None:
    out = io.BytesIO()
    try:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, kind in entries:
                info = _info(name or "x", kind, size=3 if kind == tarfile.REGTYPE else 0)
                tar.addfile(info, io.BytesIO(b"abc") if kind == tarfile.REGTYPE else None)
    except (ValueError, UnicodeError):  # tarfile itself cannot write some names; not our case
        return
    try:
        for name, _ in _read(out.getvalue()):
            assert not name.startswith("/") and ".." not in name.split("/")
    except ArchiveError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_only_raise_archive_errors(data: bytes) -> None:
    for candidate in (data, ZSTD_MAGIC + data):
        with contextlib.suppress(ArchiveError):
            _read(candidate)

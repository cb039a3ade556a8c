"""The archive writer: deterministic bytes, fixed metadata, and zstd frames chosen by the bytes."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from envpack.core.archive import ZSTD_MAGIC
from envpack.packer.archivewrite import ArchiveWriter, Compression
from tests.archivesamples import MEMBERS, plain_tar, read_archive, write_archive

# --- writing --------------------------------------------------------------------------------


# Big enough to be sampled (archive._PACKED_FROM is 256 KiB): one that zstd cannot shrink
# (what a .conda's zstd payload or a wheel's deflate looks like), one that it can.
PACKED = random.Random(2).randbytes(300_000)
PLAIN = b"def f():\n    return 1\n" * 14_000


def _frames(data: bytes) -> list[bytes]:
    """Each zstd frame of `data`, decompressed on its own."""
    frames = []
    while data:
        frame = zstandard.ZstdDecompressor().decompressobj()
        frames.append(frame.decompress(data))
        data = frame.unused_data
    return frames


def test_an_archive_without_big_packed_members_is_one_frame() -> None:
    # MEMBERS' random .conda is under the sampling size: it stays in the level's frame.
    assert len(_frames(write_archive("zstd"))) == 1


def test_big_members_that_do_not_compress_get_a_fast_frame_of_their_own() -> None:
    members = [
        ("envpack.json", b"{}\n"),
        ("channel/a-1-0.conda", PACKED),
        ("channel/b-1-0.conda", PACKED[::-1]),
        ("channel/c-1-0.tar.bz2", PLAIN),
        ("channel/repodata.json", b"{}" * 100),
    ]
    frames = _frames(write_archive("zstd", members))
    # The level's frame, the fast one (both packed members: consecutive ones share it), and
    # the level's again from the next big member that compresses, to the end.
    assert len(frames) == 3
    firsts = ("envpack.json", "channel/a-1-0.conda", "channel/c-1-0")
    for frame, first in zip(frames, firsts, strict=True):
        assert first.encode() in frame[:1536]  # the frame starts at that member's header
    assert b"".join(frames) == write_archive("none", members)
    assert read_archive(write_archive("zstd", members)) == members


def test_frames_change_only_at_member_boundaries() -> None:
    members = [("a", PLAIN), ("b", PACKED), ("c", PLAIN), ("d", PACKED), ("e", PLAIN)]
    data = write_archive("zstd", members)
    frames = _frames(data)
    assert len(frames) == 5
    plain_tar = write_archive("none", members)
    assert b"".join(frames) == plain_tar
    assert write_archive("zstd", members) == data  # deterministic with frames too
    # Every frame but the first opens on a tar header block.
    at = len(frames[0])
    for frame in frames[1:]:
        assert at % tarfile.BLOCKSIZE == 0
        assert tarfile.TarInfo.frombuf(frame[:512], "utf-8", "surrogateescape").name in "abcde"
        at += len(frame)


def test_the_zstd_tool_reads_an_archive_of_many_frames(tmp_path: Path) -> None:
    zstd = shutil.which("zstd")
    if zstd is None:
        pytest.skip("the zstd command is not installed")
    members = [("a", PLAIN), ("b", PACKED), ("c", PLAIN)]
    archive = tmp_path / "a.tar"
    archive.write_bytes(write_archive("zstd", members))
    done = subprocess.run([zstd, "-dc", archive], capture_output=True, check=True)
    assert done.stdout == write_archive("none", members)


def test_a_packed_member_costs_next_to_nothing_in_size() -> None:
    members = [("b", PACKED)]
    assert len(write_archive("zstd", members)) < len(write_archive("none", members)) * 1.001


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_writer_is_deterministic(compression: Compression) -> None:
    assert write_archive(compression) == write_archive(compression)


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
    assert out.getvalue() == write_archive(compression)


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_member_metadata_is_fixed(compression: Compression) -> None:
    with tarfile.open(fileobj=io.BytesIO(plain_tar(write_archive(compression))), mode="r:") as tar:
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


def test_zstd_output_is_zstd_and_none_is_aplain_tar() -> None:
    zst = write_archive("zstd")
    plain = write_archive("none")
    assert zst.startswith(ZSTD_MAGIC)
    assert not plain.startswith(ZSTD_MAGIC)
    assert len(plain) % 512 == 0
    assert plain_tar(zst) == plain  # same tar inside, only the compression differs
    # Readable by any tar reader, including the stdlib's own auto-detection.
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        assert len(tar.getnames()) == len(MEMBERS)


def test_zstd_frame_carries_a_checksum() -> None:
    params = zstandard.get_frame_parameters(write_archive("zstd"))
    assert params.has_checksum


def test_compression_level_changes_nothing_but_size() -> None:
    fast = io.BytesIO()
    with ArchiveWriter(fast, "zstd", level=1) as writer:
        for name, data in MEMBERS:
            writer.add_bytes(name, data)
    assert read_archive(fast.getvalue()) == read_archive(write_archive("zstd"))


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
    assert read_archive(sink.getvalue()) == [("channel/noarch/big.conda", big.read_bytes())]

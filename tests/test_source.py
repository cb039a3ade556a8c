"""envpack.target.source called directly: ArchiveSource over a file, a folder, stdin through a
real pipe, a self-extracting file and this very program; each misuse is one EnvpackError."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from envpack.core.errors import ArchiveError, EnvpackError, UsageError
from envpack.core.folder import members_of
from envpack.core.selfextract import TRAILER_SIZE
from envpack.target.source import DEFAULT_PACK, ArchiveSource
from tests.clirun import run_cli
from tests.stubunpacker import build_stub_unpacker


@pytest.fixture(scope="module")
def packs(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel, channel_url: str
) -> dict[str, Path]:
    """One lock packed three ways from one cache: a tar, a folder, a self-extracting file."""
    base = tmp_path_factory.mktemp("source")
    project = lock_for(fixture_channel.lock_v6, channel_url, base / "project").parent
    common = ("--cache", base / "cache", "-q")
    out = {"tar": base / "env.tar", "folder": base / "env-folder", "run": base / "env.run"}
    made = run_cli("envpack", project, "-o", out["tar"], *common)
    assert made.returncode == 0, made.stderr.decode()
    made = run_cli("envpack", project, "--directory-only", "-o", out["folder"], *common)
    assert made.returncode == 0, made.stderr.decode()
    stub = build_stub_unpacker(base / "unpacker")
    made = run_cli(
        "envpack", project, "-o", out["run"], "--create-executable", "--unpacker", stub, *common
    )
    assert made.returncode == 0, made.stderr.decode()
    return out


def _members(source: object) -> list[tuple[str, bytes]]:
    assert isinstance(source, Path | io.IOBase), source
    return [(m.name, m.stream.read()) for m in members_of(source)]  # type: ignore[arg-type]


@pytest.fixture
def stdin_pipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """stdin replaced by the read end of a real pipe; yields its write end."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    monkeypatch.setattr(sys, "stdin", reader)
    yield write_fd
    reader.close()


def test_a_file_is_opened_and_closed(packs: dict[str, Path]) -> None:
    source = ArchiveSource(str(packs["tar"]))
    with source as got:
        assert not isinstance(got, Path)
        assert got.read() == packs["tar"].read_bytes()
    assert got.closed


def test_a_folder_is_handed_on_as_its_path(packs: dict[str, Path]) -> None:
    with ArchiveSource(str(packs["folder"])) as got:
        assert got == packs["folder"]
        folder_members = _members(got)
    with ArchiveSource(str(packs["tar"])) as tar:
        assert folder_members == _members(tar)


@contextlib.contextmanager
def feeding(fd: int, data: bytes) -> Iterator[None]:
    """Write `data` into the pipe from another thread, as a producer upstream would."""

    def feed() -> None:
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        yield
    finally:
        writer.join(timeout=60)


def test_stdin_through_a_real_pipe(packs: dict[str, Path], stdin_pipe: int) -> None:
    data = packs["tar"].read_bytes()
    assert len(data) > 1 << 16  # more than a pipe holds: the reader must poll and read on
    with feeding(stdin_pipe, data), ArchiveSource("-") as got:
        assert not isinstance(got, Path)
        received = got.read()
    assert received == data


def test_stdin_reads_as_the_archive_member_by_member(
    packs: dict[str, Path], stdin_pipe: int
) -> None:
    with feeding(stdin_pipe, packs["tar"].read_bytes()), ArchiveSource("-") as got:
        from_pipe = _members(got)
    with ArchiveSource(str(packs["tar"])) as tar:
        assert from_pipe == _members(tar)


def test_stdin_from_a_terminal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    main, secondary = pty.openpty()
    with os.fdopen(secondary, "rb", buffering=0) as terminal:
        monkeypatch.setattr(sys, "stdin", terminal)
        with (
            pytest.raises(UsageError, match="refusing to read an archive from a terminal"),
            ArchiveSource("-"),
        ):
            pass
    os.close(main)


def test_a_self_extracting_file_gives_its_archive(packs: dict[str, Path]) -> None:
    with ArchiveSource(str(packs["run"])) as got:
        assert not isinstance(got, Path)
        payload = got.read()
    # The payload is the very archive of the same lock: packs are reproducible.
    assert payload == packs["tar"].read_bytes()


def test_this_program_as_a_self_extracting_file(
    packs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An app file's launcher names the file it runs from in ENVPACK_SELF.
    monkeypatch.setenv("ENVPACK_SELF", str(packs["run"]))
    with ArchiveSource(None) as got:
        assert not isinstance(got, Path)
        assert got.read() == packs["tar"].read_bytes()


def test_an_altered_self_extracting_file_is_refused_before_reading(
    packs: dict[str, Path], tmp_path: Path
) -> None:
    data = bytearray(packs["run"].read_bytes())
    data[-TRAILER_SIZE - 100] ^= 0xFF  # a byte of the payload, not of the trailer
    altered = tmp_path / "env.run"
    altered.write_bytes(bytes(data))
    with (
        pytest.raises(ArchiveError, match=r"env\.run is corrupt: its payload's sha256 is"),
        ArchiveSource(str(altered)),
    ):
        pass


def test_a_cut_self_extracting_file_is_refused(packs: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "env.run"
    cut.write_bytes(packs["run"].read_bytes()[: -TRAILER_SIZE - 1000])
    with pytest.raises(ArchiveError, match=r"env\.run is truncated"), ArchiveSource(str(cut)):
        pass


def test_a_missing_path_is_one_envpack_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tar"
    with pytest.raises(EnvpackError) as caught:
        ArchiveSource(str(missing)).__enter__()
    assert str(caught.value) == f"no such archive: {missing}"
    assert not missing.exists()


def test_a_path_through_a_file_is_one_envpack_error(packs: dict[str, Path]) -> None:
    inside = packs["tar"] / "env.tar"  # ENOTDIR: a path component is a file
    with (
        pytest.raises(EnvpackError, match=re.escape(f"cannot read {inside}: Not a directory")),
        ArchiveSource(str(inside)),
    ):
        pass


def test_no_archive_reads_environment_tar_here(
    packs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not frozen, this program is python: no payload, so pixi-unpack's default applies.
    monkeypatch.delenv("ENVPACK_SELF", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="missing ARCHIVE"), ArchiveSource(None):
        pass
    (tmp_path / DEFAULT_PACK).write_bytes(packs["tar"].read_bytes())
    with ArchiveSource(None) as got:
        assert not isinstance(got, Path)
        assert got.read() == packs["tar"].read_bytes()

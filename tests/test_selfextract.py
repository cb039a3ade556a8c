"""Self-extracting files: unpacker + raw archive + trailer, read back without copying."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from envpack.core.errors import EnvpackError
from envpack.core.selfextract import TRAILER_SIZE, find_unpacker
from tests.clirun import assert_one_error_line, run_cli
from tests.stubunpacker import build_stub_unpacker


@pytest.fixture(scope="module")
def stub_unpacker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Stands in for the static binary on this host; the bytes before the payload are opaque.
    return build_stub_unpacker(tmp_path_factory.mktemp("unpacker"))


@pytest.fixture(scope="module")
def packed(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: object, stub_unpacker: Path
) -> dict[str, Path]:
    from devtools.fixtures.channel import FixtureChannel, lock_for
    from devtools.httpserver import serve_directory

    assert isinstance(fixture_channel, FixtureChannel)
    base = tmp_path_factory.mktemp("sfx")
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_v6, url, base / "project").parent
        common = ["--cache", str(base / "cache"), "-q"]
        tar = base / "env.tar"
        assert run_cli("envpack", project, "-o", tar, *common).returncode == 0
        run = base / "env.run"
        result = run_cli(
            "envpack",
            project,
            "-o",
            run,
            *common,
            "--create-executable",
            "--unpacker",
            stub_unpacker,
        )
        assert result.returncode == 0, result.stderr.decode()
    return {"tar": tar, "run": run, "project": project}


def test_layout_is_unpacker_then_head_then_raw_archive_then_trailer(
    packed: dict[str, Path], stub_unpacker: Path
) -> None:
    data = packed["run"].read_bytes()
    program = stub_unpacker.read_bytes()
    archive = packed["tar"].read_bytes()
    start = len(program) + TRAILER_SIZE
    assert data[: len(program)] == program
    assert data[start : start + len(archive)] == archive
    assert len(data) == start + len(archive) + TRAILER_SIZE
    sha, offset, length, version, magic = struct.unpack("<32sQQI12s", data[-TRAILER_SIZE:])
    assert (offset, length, version, magic) == (start, len(archive), 2, b"envpack-sfx\n")
    assert sha == hashlib.sha256(archive).digest()
    # The head repeats the trailer where the program ends, for files cut short.
    head = struct.unpack("<32sQQI12s", data[len(program) : start])
    assert head == (sha, offset, length, 2, b"envpack-sfxh")
    assert packed["run"].stat().st_mode & 0o111


def test_envunpack_reads_a_self_extracting_file(packed: dict[str, Path], tmp_path: Path) -> None:
    listing = run_cli("envunpack", packed["run"], "--list", "--json")
    assert listing.returncode == 0, listing.stderr.decode()
    assert json.loads(listing.stdout)["format"] == "envpack"
    result = run_cli("envunpack", packed["run"], "-o", tmp_path / "app", "-q")
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "app" / "env" / "bin" / "hello-c").exists()


def test_tampered_payload_is_refused_before_writing(
    packed: dict[str, Path], tmp_path: Path
) -> None:
    data = bytearray(packed["run"].read_bytes())
    data[-TRAILER_SIZE - 1000] ^= 0x01
    bad = tmp_path / "bad.run"
    bad.write_bytes(bytes(data))
    assert_one_error_line(run_cli("envunpack", bad, "-o", tmp_path / "app"), "corrupt")
    assert not (tmp_path / "app").exists()


def test_truncated_file_is_refused(packed: dict[str, Path], tmp_path: Path) -> None:
    data = packed["run"].read_bytes()
    cut = tmp_path / "cut.run"
    cut.write_bytes(data[:-TRAILER_SIZE][:-10] + data[-TRAILER_SIZE:])
    assert_one_error_line(run_cli("envunpack", cut, "-o", tmp_path / "app"), "truncated")
    assert not (tmp_path / "app").exists()


def test_missing_unpacker_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(EnvpackError, match="scripts/build-unpacker --arch aarch64"):
        find_unpacker("linux-aarch64", None, [tmp_path])
    with pytest.raises(EnvpackError, match="no such file"):
        find_unpacker("linux-64", tmp_path / "nope", [])


def test_unpacker_option_needs_create_executable(
    packed: dict[str, Path], stub_unpacker: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "envpack", packed["project"], "-o", tmp_path / "x", "--unpacker", stub_unpacker
    )
    assert_one_error_line(result, "--create-executable")


def test_without_archive_and_without_payload_is_a_usage_error() -> None:
    assert_one_error_line(run_cli("envunpack"), "missing ARCHIVE")

"""Writing the archive with each package file read once: the cache hits are hashed as they
are copied, and a corrupt one is downloaded again before the output is renamed into place."""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from envpack.core.errors import EnvpackError
from envpack.core.progress import SilentReporter
from envpack.packer.fetch import FetchOptions
from envpack.packer.pack import PackOptions, pack
from tests.adversarial.test_pack_signals import _dead_port
from tests.stubunpacker import build_stub_unpacker
from tests.test_fetch import RecordingReporter

_opened: Counter[str] | None = None


def _count_opens(event: str, args: tuple[object, ...]) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str | Path):
        _opened[str(args[0])] += 1


sys.addaudithook(_count_opens)  # audit hooks stay for the process: this one only counts


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "sha256").rglob("*") if p.is_file())


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_warm_pack_reads_each_cached_file_once(fixture_project: Path, tmp_path: Path) -> None:
    global _opened
    cache = tmp_path / "cache"
    first = pack(
        PackOptions(fixture_project, tmp_path / "a.tar", cache_dir=cache), SilentReporter()
    )
    files = _cache_files(cache)
    assert len(files) == len(first.manifest.artifacts)
    _opened = Counter()
    try:
        again = pack(
            PackOptions(fixture_project, tmp_path / "b.tar", cache_dir=cache), SilentReporter()
        )
    finally:
        opened, _opened = _opened, None
    assert {str(f): opened[str(f)] for f in files} == {str(f): 1 for f in files}
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert again.sha256 == first.sha256


def test_a_corrupt_cached_file_is_downloaded_again_and_the_archive_rewritten(
    fixture_project: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    pack(PackOptions(fixture_project, tmp_path / "good.tar", cache_dir=cache), SilentReporter())
    victim = max(_cache_files(cache), key=lambda p: p.stat().st_size)  # same size, other bytes
    good = victim.read_bytes()
    _flip_a_byte(victim)
    recording = RecordingReporter()
    result = pack(PackOptions(fixture_project, tmp_path / "env.tar", cache_dir=cache), recording)
    (warning,) = recording.warnings
    assert "is corrupt; downloading it again" in warning, warning
    assert (tmp_path / "env.tar").read_bytes() == (tmp_path / "good.tar").read_bytes()
    assert result.size == (tmp_path / "env.tar").stat().st_size
    assert victim.read_bytes() == good


def test_a_corrupt_cached_file_that_cannot_be_fetched_leaves_no_output(
    fixture_project: Path, fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    pack(PackOptions(fixture_project, tmp_path / "good.tar", cache_dir=cache), SilentReporter())
    _flip_a_byte(max(_cache_files(cache), key=lambda p: p.stat().st_size))
    # The same lock with its URLs at a port nothing listens on: the download again fails.
    project = lock_for(fixture_channel.lock_v6, f"http://127.0.0.1:{_dead_port()}", tmp_path / "p")
    options = PackOptions(
        project.parent, tmp_path / "env.tar", cache_dir=cache, fetch=FetchOptions(attempts=1)
    )
    with pytest.raises(EnvpackError):
        pack(options, RecordingReporter())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "good.tar", "p", "project"]


def test_a_folder_pack_never_copies_a_corrupt_cached_file(
    fixture_project: Path, tmp_path: Path
) -> None:
    # A folder is written by copying, with nothing hashing on the way: its hits are checked
    # before they are copied, as they always were.
    cache = tmp_path / "cache"
    pack(PackOptions(fixture_project, tmp_path / "good.tar", cache_dir=cache), SilentReporter())
    victim = max(_cache_files(cache), key=lambda p: p.stat().st_size)
    good = victim.read_bytes()
    _flip_a_byte(victim)
    recording = RecordingReporter()
    options = PackOptions(
        fixture_project, tmp_path / "folder", cache_dir=cache, directory_only=True
    )
    result = pack(options, recording)
    (warning,) = recording.warnings
    assert "is corrupt; downloading it again" in warning, warning
    copies = {p.read_bytes() for p in (tmp_path / "folder").rglob("*") if p.is_file()}
    assert good in copies and victim.read_bytes() == good
    assert len(result.manifest.artifacts) == len(_cache_files(cache))


def test_a_self_extracting_pack_is_rewritten_whole_after_a_corrupt_cached_file(
    fixture_project: Path, tmp_path: Path
) -> None:
    # The payload is hashed and written on a thread of its own: what it still holds when the
    # corrupt file is found must land before the output is emptied, never after.
    unpacker = build_stub_unpacker(tmp_path / "stub")
    cache = tmp_path / "cache"

    def options(name: str) -> PackOptions:
        return PackOptions(
            fixture_project,
            tmp_path / name,
            cache_dir=cache,
            create_executable=True,
            unpacker=unpacker,
        )

    pack(options("good.sh"), SilentReporter())
    _flip_a_byte(max(_cache_files(cache), key=lambda p: p.stat().st_size))
    recording = RecordingReporter()
    result = pack(options("env.sh"), recording)
    assert len(recording.warnings) == 1
    assert (tmp_path / "env.sh").read_bytes() == (tmp_path / "good.sh").read_bytes()
    assert result.sha256 == hashlib.sha256((tmp_path / "env.sh").read_bytes()).hexdigest()
    assert [t for t in threading.enumerate() if t.name == "output"] == []

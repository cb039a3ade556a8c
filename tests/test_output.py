"""envpack.packer.output: inputs are never outputs, existing files need force, failures leave
nothing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from envpack.core.errors import OutputError
from envpack.packer.output import WRITEBACK_PERIOD, atomic_output, check_output, same_file


def test_same_file_sees_through_spellings(tmp_path: Path) -> None:
    lock = tmp_path / "pixi.lock"
    lock.write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(lock)
    os.link(lock, tmp_path / "hard")
    for spelling in ("sub/../pixi.lock", "link", "hard"):
        assert same_file(tmp_path / spelling, lock), spelling
    assert not same_file(tmp_path / "other", lock)


@pytest.mark.parametrize("force", [False, True])
def test_an_input_is_never_an_output(tmp_path: Path, force: bool) -> None:
    lock = tmp_path / "pixi.lock"
    lock.write_text("x")
    with pytest.raises(OutputError, match="is the lock"):
        check_output(tmp_path / "." / "pixi.lock", [("the lock", lock)], force=force)


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "env.tar"
    out.write_text("old")
    with pytest.raises(OutputError, match="--force"):
        check_output(out, [], force=False)
    check_output(out, [], force=True)
    check_output(tmp_path / "new.tar", [], force=False)
    with pytest.raises(OutputError, match="does not exist"):
        check_output(tmp_path / "no" / "x.tar", [], force=False)
    with pytest.raises(OutputError, match="is a directory"):
        check_output(tmp_path, [], force=True)


def test_atomic_output_renames_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "env.tar"
    with pytest.raises(RuntimeError), atomic_output(out) as writer:
        writer.write(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(out) as writer:
        writer.write(b"whole")
    assert out.read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["env.tar"]


def test_restart_empties_the_output_and_its_hash(tmp_path: Path) -> None:
    out = tmp_path / "env.tar"
    with atomic_output(out) as writer:
        writer.write(b"a first attempt, longer than the second")
        writer.patch(0, b"A")
        writer.restart()
        writer.write(b"second")
        assert writer.size == 6
        assert writer.hexdigest() == hashlib.sha256(b"second").hexdigest()
    assert out.read_bytes() == b"second"


@pytest.mark.parametrize("where", ["/proc", "/sys"])
def test_pseudo_filesystems_fail_on_entry(where: str) -> None:
    entered = False
    with pytest.raises(OutputError, match=where), atomic_output(Path(where) / "x.tar"):
        entered = True
    assert not entered


def test_patch_rewrites_bytes_and_the_digest_follows(tmp_path: Path) -> None:
    out = tmp_path / "env.run"
    with atomic_output(out, executable=True) as writer:
        writer.write(b"AAAA" + b"payload")
        writer.patch(0, b"BBBB")
        digest = writer.hexdigest()
    assert out.read_bytes() == b"BBBBpayload"
    assert digest == hashlib.sha256(b"BBBBpayload").hexdigest()
    assert out.stat().st_mode & 0o111


def _writeback_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "writeback"]


@pytest.mark.parametrize("fails", [False, True])
def test_the_output_is_flushed_to_disk_while_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    flushed: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        flushed.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    out = tmp_path / "env.tar"
    with contextlib.suppress(RuntimeError), atomic_output(out) as writer:
        writer.write(b"x" * 4096)
        fd = writer.fileno()
        deadline = time.monotonic() + 5
        while not flushed and time.monotonic() < deadline:
            time.sleep(WRITEBACK_PERIOD)
        assert set(flushed) == {fd}
        if fails:
            raise RuntimeError("boom")
    # The flushing stops with the output, before its file is closed, whatever the ending.
    assert _writeback_threads() == []
    count = len(flushed)
    time.sleep(3 * WRITEBACK_PERIOD)
    assert len(flushed) == count
    assert out.exists() != fails

"""envpack.packer.output: inputs are never outputs, existing files need force, failures leave
nothing."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from envpack.core.errors import OutputError
from envpack.packer.output import (
    WRITEBACK_PERIOD,
    HashingWriter,
    atomic_output,
    check_output,
    same_file,
)


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


def _output_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "output"]


class _Full(io.RawIOBase):
    """A file on a disk that fills after `room` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.kept = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if len(self.kept) + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.kept += data
        return len(data)


def test_the_hash_and_the_bytes_are_those_written_in_order(tmp_path: Path) -> None:
    chunks = [bytes([i]) * (i * 997) for i in range(64)]  # more than the queue holds
    out = tmp_path / "env.tar"
    with atomic_output(out) as writer:
        for chunk in chunks:
            writer.write(bytearray(chunk))  # a buffer the caller may reuse is copied
        digest = writer.hexdigest()
    assert out.read_bytes() == b"".join(chunks)
    assert digest == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert _output_threads() == []


def test_a_full_disk_is_told_against_the_output_by_the_next_call(tmp_path: Path) -> None:
    output = tmp_path / "env.tar"
    writer = HashingWriter(_Full(room=10), output)  # type: ignore[arg-type]
    writer.write(b"x" * 11)  # queued: the thread meets the full disk
    with pytest.raises(OutputError, match=f"no space left on the device writing {output}"):
        for _ in range(1000):  # the write after it, or the flush, reports it
            writer.write(b"y")
        writer.flush()
    writer.close()
    assert _output_threads() == []


def test_a_failure_below_a_nested_writer_reaches_the_outer_caller(tmp_path: Path) -> None:
    output = tmp_path / "env.run"
    outer = HashingWriter(_Full(room=10), output)  # type: ignore[arg-type]
    payload = HashingWriter(outer)  # a self-extractor's payload, hashed on its own
    with pytest.raises(OutputError, match="no space left on the device"):
        for _ in range(1000):
            payload.write(b"z" * 100)
        payload.digest()
    payload.close()
    outer.close()
    assert _output_threads() == []


def test_stdout_output_stops_its_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(sink))
    with atomic_output(None) as writer:
        writer.write(b"to a pipe")
    assert sink.getvalue() == b"to a pipe"
    assert _output_threads() == []


def test_the_digest_is_there_after_the_output_is_closed(tmp_path: Path) -> None:
    out = tmp_path / "image.tar"
    with atomic_output(out) as writer:
        writer.write(b"an oci archive")
    assert writer.hexdigest() == hashlib.sha256(b"an oci archive").hexdigest()


def test_a_given_up_pipe_output_does_not_wait_for_a_reader_that_never_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read_fd, write_fd = os.pipe()
    stdout = io.TextIOWrapper(os.fdopen(write_fd, "wb"))
    monkeypatch.setattr(sys, "stdout", stdout)
    started = time.monotonic()
    with pytest.raises(RuntimeError), atomic_output(None) as writer:
        for _ in range(10):  # the pipe takes 64 KiB; the thread is stuck in the 2nd write
            writer.write(b"x" * 65536)
        raise RuntimeError("interrupted")
    assert time.monotonic() - started < 5
    os.close(read_fd)  # the stuck write now fails (EPIPE), and the thread ends
    deadline = time.monotonic() + 5
    while _output_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _output_threads() == []


def test_a_given_up_file_output_leaves_no_thread_and_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "env.tar") as writer:
        for _ in range(40):
            writer.write(b"y" * 65536)
        raise RuntimeError("interrupted")
    assert _output_threads() == []
    assert list(tmp_path.iterdir()) == []


def test_a_foreground_writer_hashes_in_the_callers_thread(tmp_path: Path) -> None:
    with atomic_output(tmp_path / "env.run") as out:
        payload = HashingWriter(out, background=False)
        payload.write(b"payload")
        assert payload.digest() == hashlib.sha256(b"payload").digest()
        assert len(_output_threads()) == 1  # the output's, none of its own
    assert (tmp_path / "env.run").read_bytes() == b"payload"

"""Where a pack goes: checked before any download, written beside it, renamed into place."""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from envpack.core.errors import OutputError, output_error
from envpack.core.layout import CHUNK

# How often the output is flushed to disk while it is written (see _Writeback).
WRITEBACK_PERIOD = 0.02


class HashingWriter:
    """Hashes what passes through, so the result can report the archive's sha256.

    A failed write (disk full) is reported against the output it was meant for.
    """

    def __init__(self, sink: BinaryIO | HashingWriter, output: Path | None = None) -> None:
        self._sink = sink
        self._output = output
        self._sha = hashlib.sha256()
        self._patched = False
        self.size = 0

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self.size += len(data)
        try:
            return self._sink.write(data)
        except OSError as exc:
            if self._output is None:
                raise
            raise output_error(self._output, exc, "writing") from None

    def flush(self) -> None:
        self._sink.flush()

    def tell(self) -> int:
        return self.size

    def fileno(self) -> int:
        return self._sink.fileno()

    def patch(self, offset: int, data: bytes) -> None:
        """Overwrite bytes already written (a file, not a pipe: a pipe keeps them as they are)."""
        if self._output is None:
            return
        self._sink.flush()
        os.pwrite(self._sink.fileno(), data, offset)
        self._patched = True

    def restart(self) -> None:
        """Empty the output file to write it again from its first byte (not a pipe's)."""
        if self._output is None or isinstance(self._sink, HashingWriter):
            raise RuntimeError("only an output file can be rewritten")  # pragma: no cover
        self._sink.flush()
        self._sink.seek(0)
        self._sink.truncate()
        self._sha = hashlib.sha256()
        self._patched = False
        self.size = 0

    def hexdigest(self) -> str:
        if not self._patched:
            return self._sha.hexdigest()
        # Patched bytes were hashed as first written: hash the file as it now is.
        self._sink.flush()
        sha = hashlib.sha256()
        fd, at = self._sink.fileno(), 0
        while chunk := os.pread(fd, CHUNK, at):
            sha.update(chunk)
            at += len(chunk)
        return sha.hexdigest()

    def digest(self) -> bytes:
        return self._sha.digest()


def same_file(a: Path, b: Path) -> bool:
    """True when two spellings name one file: `./x`, `../d/x`, a symlink or a hard link."""
    try:
        return a.samefile(b)
    except OSError:
        return a.absolute().resolve() == b.absolute().resolve()


def check_output(output: Path | None, inputs: Iterable[tuple[str, Path]], *, force: bool) -> None:
    """Refuse an output that would destroy an input or, without --force, any existing file.

    `inputs` are (what, path) pairs such as ("the lock", pixi.lock). Called before anything
    is downloaded, so a mistyped -o costs nothing.
    """
    if output is None:
        return
    for what, path in inputs:
        # Even --force may not turn the lock (or any other input) into the archive.
        if (output.exists() or output.is_symlink()) and same_file(output, path):
            raise OutputError(f"output {output} is {what}; choose another -o")
    if output.is_dir():
        raise OutputError(f"output {output} is a directory; give a file name such as env.tar")
    parent = output.parent if output.parent != Path() else Path.cwd()
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist")
    if (output.exists() or output.is_symlink()) and not force:
        raise OutputError(f"{output} already exists; pass --force to replace it")


@contextmanager
def atomic_output(output: Path | None, *, executable: bool = False) -> Iterator[HashingWriter]:
    """Write to a temp file beside the output and rename, so a failure leaves nothing behind.

    The temp file is created on entry: entering before the downloads finds an output that
    cannot be written (read-only, /proc, /sys) before any time is spent.
    """
    if output is None:
        yield HashingWriter(sys.stdout.buffer)
        return
    parent = output.parent
    try:
        handle, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL):  # /proc and friends take no new files
            raise OutputError(f"cannot create {output}: {parent} does not take files") from None
        raise output_error(output, exc, "writing") from None
    tmp = Path(tmp_name)
    raw = os.fdopen(handle, "wb")
    writeback = _Writeback(handle)
    try:
        yield HashingWriter(raw, output)
        writeback.stop()
        _finish(raw, tmp, output, 0o755 if executable else 0o644)
    except BaseException:
        writeback.stop()
        # Closing flushes the buffer, which fails again on a full disk: the first error counts.
        with suppress(OSError):
            raw.close()
        tmp.unlink(missing_ok=True)
        raise


class _Writeback:
    """Flushes the output file to disk every WRITEBACK_PERIOD, on a thread of its own.

    The fsync before the rename then waits only for the last moments' bytes: a warm pack's
    128 MB took 0.10-0.12 s to fsync at the end, 0.04-0.05 s with this. The flushing releases
    the GIL, so the writing goes on meanwhile. It stops before the file is closed.
    """

    def __init__(self, fd: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fd,), name="writeback", daemon=True)
        self._thread.start()

    def _run(self, fd: int) -> None:
        while not self._stop.wait(WRITEBACK_PERIOD):
            with suppress(OSError):  # the final fsync reports what went wrong
                os.fdatasync(fd)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _finish(raw: BinaryIO, tmp: Path, output: Path, mode: int) -> None:
    try:
        raw.flush()
        os.fsync(raw.fileno())
        raw.close()
        tmp.chmod(mode)
        tmp.replace(output)
    except OSError as exc:
        raise output_error(output, exc, "writing") from None

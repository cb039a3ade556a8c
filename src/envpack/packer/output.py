"""Where a pack goes: checked before any download, written beside it, renamed into place."""

from __future__ import annotations

import errno
import hashlib
import os
import queue
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

    In the background (the output's own writer), the hashing and the writing run on a thread
    of their own (both release the GIL), so the packing thread goes on reading and
    compressing meanwhile; every call that looks at the output waits for them first. A
    failed write (disk full) is reported against the output it was meant for, by the next
    call. In the foreground (a self-extractor's payload, hashed on its way into the output's
    writer) it hashes and passes on in the caller's thread.
    """

    def __init__(
        self,
        sink: BinaryIO | HashingWriter,
        output: Path | None = None,
        *,
        background: bool = True,
    ) -> None:
        self._sink = sink
        self._output = output
        self._sha = hashlib.sha256()
        self._patched = False
        self.size = 0
        self._background = background
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED)
        self._failed: Exception | None = None
        self._dropping = False
        self._thread: threading.Thread | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if not self._background:
            self._sha.update(data)
            self.size += len(data)
            try:
                self._sink.write(bytes(data))
            except OSError as exc:
                self._failed = exc
                self._raise_failure()
            return len(data)
        self._raise_failure()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="output", daemon=True)
            self._thread.start()
        self._queue.put(bytes(data))
        self.size += len(data)
        return len(data)

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._failed is None and not self._dropping:
                self._sha.update(data)
                try:
                    self._sink.write(data)
                # Whatever it is, the packing thread raises it on its next call: a thread
                # that died here would leave that thread waiting on the queue for ever.
                except Exception as exc:  # noqa: BLE001
                    self._failed = exc
            self._queue.task_done()
        self._queue.task_done()

    def _settle(self) -> None:
        """Wait until every byte given to write() is hashed and written."""
        self._queue.join()
        self._raise_failure()

    def _raise_failure(self) -> None:
        failed = self._failed
        if failed is None:
            return
        if self._output is None or not isinstance(failed, OSError):
            raise failed
        raise output_error(self._output, failed, "writing") from None

    def close(self) -> None:
        """Stop the thread once everything given to write() is written."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def abandon(self, *, wait: bool = True) -> None:
        """Stop the thread, dropping what it has not written: the output is given up.

        wait=False for a pipe, whose reader may never read again: the thread may be stuck
        in its write, and a second signal must not be needed to end envpack.
        """
        self._dropping = True
        with suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
                self._queue.task_done()
        if self._thread is not None:
            with suppress(queue.Full):
                self._queue.put_nowait(None)
            if wait:
                self._thread.join()
            self._thread = None

    def flush(self) -> None:
        self._settle()
        self._sink.flush()

    def tell(self) -> int:
        return self.size

    def fileno(self) -> int:
        return self._sink.fileno()

    def patch(self, offset: int, data: bytes) -> None:
        """Overwrite bytes already written (a file, not a pipe: a pipe keeps them as they are)."""
        if self._output is None:
            return
        self.flush()
        os.pwrite(self._sink.fileno(), data, offset)
        self._patched = True

    def restart(self) -> None:
        """Empty the output file to write it again from its first byte (not a pipe's)."""
        if self._output is None or isinstance(self._sink, HashingWriter):
            raise RuntimeError("only an output file can be rewritten")  # pragma: no cover
        self.flush()
        self._sink.seek(0)
        self._sink.truncate()
        self._sha = hashlib.sha256()
        self._patched = False
        self.size = 0

    def hexdigest(self) -> str:
        # Also after the output is finished and its file closed: only a patch needs the file.
        self._settle()
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
        self._settle()
        return self._sha.digest()


# Chunks (up to CHUNK each) waiting for the output thread: bounds the memory it may hold.
_QUEUED = 16


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
        writer = HashingWriter(sys.stdout.buffer)
        try:
            yield writer
            writer.flush()
        except BaseException:
            writer.abandon(wait=False)
            raise
        writer.close()
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
    writer = HashingWriter(raw, output)
    try:
        yield writer
        writer.flush()
        writer.close()
        writeback.stop()
        _finish(raw, tmp, output, 0o755 if executable else 0o644)
    except BaseException:
        writer.abandon()
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

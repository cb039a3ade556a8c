"""Where envunpack's archive comes from: a file, a folder, stdin, a registry, or the program.

A self-extracting file is checked whole (its trailer and payload hash) before a byte of it
is unpacked; stdin is read through short polls so that signals act at once.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from envpack.core.errors import ArchiveError, EnvpackError, UsageError
from envpack.core.layout import CHUNK
from envpack.core.ociref import is_oci

if TYPE_CHECKING:  # both load tqdm or oras: only a registry pull may pay for them
    from envpack.core.progress import Reporter
    from envpack.target.ocipull import PullOptions

DEFAULT_PACK = "environment.tar"


class _PolledPipe(io.RawIOBase):
    """A pipe read that returns to Python four times a second while no data comes.

    A signal may be delivered to any thread, and rattler starts threads of its own: one
    that lands there leaves a main thread blocked in read() with its handler pending until
    data arrives. Waiting in short select()s lets Ctrl-C and SIGTERM act within 0.25 s.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not select.select([self._fd], [], [], 0.25)[0]:
            pass
        data = os.read(self._fd, len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _stdin() -> BinaryIO:
    return io.BufferedReader(_PolledPipe(sys.stdin.fileno()), buffer_size=CHUNK)


class ArchiveSource:
    """The archive to read: a file, stdin, a self-extracting file, this very program, or an
    oci:// reference (pulled into a folder pack for the block)."""

    def __init__(
        self,
        archive: str | None,
        pull: PullOptions | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self._archive = archive
        self._file: BinaryIO | None = None
        self._pull = pull
        self._reporter = reporter
        self._stack = contextlib.ExitStack()
        self.traffic: object = None  # a registry pull's Traffic, for the report

    def __enter__(self) -> BinaryIO | Path:
        from envpack.core import selfextract
        from envpack.target.runtime import own_executable

        if is_oci(self._archive):
            from envpack.core.progress import SilentReporter
            from envpack.target.ocipull import PullOptions, pulled

            assert self._archive is not None
            reporter = self._reporter or SilentReporter()
            got = self._stack.enter_context(
                pulled(self._archive, self._pull or PullOptions(), reporter)
            )
            self.traffic = got.traffic
            return got.folder
        if self._archive == "-":
            if sys.stdin.isatty():
                raise UsageError(
                    "refusing to read an archive from a terminal; pipe one in "
                    "(cat env.tar | envunpack - -o DIR) or name the file"
                )
            return _stdin()
        if self._archive is None:
            program = own_executable()
            payload = selfextract.find_payload(program)
            if payload is None and Path(DEFAULT_PACK).is_file():
                # pixi-unpack's default: the pack pixi-pack writes by default, here.
                self._file = Path(DEFAULT_PACK).open("rb")
                return self._file
            if payload is None:
                cut = selfextract.truncation(program)
                if cut is not None:
                    raise ArchiveError(cut)
                raise UsageError("missing ARCHIVE: name the archive to unpack ('-' for stdin)")
        else:
            path = Path(self._archive)
            try:
                path.open("rb").close()
            except FileNotFoundError:
                raise EnvpackError(f"no such archive: {path}") from None
            except IsADirectoryError:
                # A pack written with --directory-only (or by pixi-pack): same checks.
                return path
            except OSError as exc:
                raise EnvpackError(f"cannot read {path}: {exc.strerror}") from None
            payload = selfextract.find_payload(path)
            if payload is None:
                cut = selfextract.truncation(path)
                if cut is not None:
                    raise ArchiveError(cut)
                self._file = path.open("rb")
                return self._file
        # Checked in full before anything is written: a cut or altered file is refused here.
        selfextract.verify(payload)
        self._file = selfextract.open_payload(payload)
        return self._file

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
        self._stack.close()

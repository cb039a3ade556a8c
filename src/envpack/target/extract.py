"""Extracting each conda package while the archive is still being read, in rattler's cache layout.

rattler's `extract` holds the GIL for a whole package, so a thread would stall the reader:
each package is extracted by a forked child instead. A member is piped straight into its
child (nothing staged, so the extra disk stays a fraction of the packages' size) or, when
it fits the staging budget, written to a file first, so that a second child can extract it
while the reader moves on. The reader hashes every byte it passes on; a wrong digest is
refused before anything links the package, and `rattler.install` then only links. Each
package's file list is made where it was extracted (extractchild.py), for pkgcheck.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import signal
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from rattler.package_streaming import extract

from envpack.core.errors import ArchiveError, InstallError, cause_text
from envpack.core.hashing import Readable, hash_stream
from envpack.target import extractchild
from envpack.target.pkgcheck import Entry

# How ENOSPC reads in rattler's io errors, and in Python's (a file list written beside a package).
_NO_SPACE = ("(os error 28)", f"[Errno {errno.ENOSPC}]")
# Read-ahead held in RAM while children extract: lets a second child work on a big package
# (numpy, scipy, pyarrow: 15-36 MB) while the reader moves on, and stays well inside
# envunpack's memory budget (~90 MB RSS on the bench env, goal <= 150 MB).
MEMORY_BUDGET = 48 << 20
# Packages up to this size are extracted by the reader itself: see _extract_here.
INLINE = 1 << 20
_PIPE_SIZE = 1 << 20  # Linux's default cap for an unprivileged pipe; fewer wake-ups than 64 KiB
_PROC_FD = Path("/proc/self/fd")


@dataclass
class _Job:
    name: str
    work: Path
    source: Path  # the staged archive, or the name of the pipe; removed when reaped
    staged: int  # bytes it holds until then
    errors: int = -1  # read end of the pipe the child tells its error through


class Extractor:
    """Hands each package to a child that extracts it under `root`; `finish()` waits for all.

    Used as a context manager: leaving it by an exception kills and reaps every child, so no
    extraction outlives the staging dir it writes into.
    """

    def __init__(
        self,
        root: Path,
        disk_budget: int,
        *,
        memory_budget: int = MEMORY_BUDGET,
        in_memory: bool | None = None,
        workers: int | None = None,
        inline: int = INLINE,
    ) -> None:
        self._root = root
        self._inline = inline
        # Without /proc (a truly bare chroot) neither a pipe nor a memfd has a path rattler
        # could open: everything is staged on disk then.
        self._can_pipe = _PROC_FD.is_dir()
        if in_memory is None:
            in_memory = self._can_pipe and hasattr(os, "memfd_create")
        self._in_memory = in_memory
        # Bytes of archives that may wait for their child at once: in RAM when the kernel
        # has memfd (no disk at all), else as files beside the env.
        self._budget = memory_budget if in_memory else disk_budget
        self._workers = workers or max(1, min(4, len(os.sched_getaffinity(0))))
        self._jobs: dict[int, _Job] = {}
        self._staged = 0
        self._failures: list[str] = []
        self.dirs: dict[str, Path] = {}

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is not None:
            self.abort()

    def feed(self, name: str, size: int, stream: Readable, each: Callable[[bytes], object]) -> str:
        """Extract member `name` (a .conda or .tar.bz2) from `stream`; return its sha256."""
        work = self._root / str(len(self.dirs))
        work.mkdir(parents=True)
        self.dirs[name] = work / "pkg"
        file_name = name.rsplit("/", 1)[-1]  # rattler tells the format by the extension
        if size <= self._budget - self._staged or not self._can_pipe:
            return self._staged_feed(name, size, stream, each, work, work / file_name)
        return self._piped_feed(name, size, stream, each, work, work / file_name)

    def _staged_feed(
        self,
        name: str,
        size: int,
        stream: Readable,
        each: Callable[[bytes], object],
        work: Path,
        path: Path,
    ) -> str:
        memfd = os.memfd_create(path.name) if self._in_memory else None
        with open(memfd, "wb", closefd=False) if memfd is not None else path.open("xb") as out:

            def store(chunk: bytes) -> None:
                out.write(chunk)
                each(chunk)

            digest = hash_stream(stream, each=store).sha256
        if memfd is not None:
            # A read-ahead in RAM: the child reaches it by this name, as it reaches a pipe.
            path.symlink_to(_PROC_FD / str(memfd))
        try:
            if size <= self._inline:
                self._extract_here(name, path, work / "pkg")
            else:
                self._wait_for_slot()
                self._staged += size
                self._spawn(_Job(name, work, path, size), path)
        finally:
            if memfd is not None:
                os.close(memfd)  # the child's copy keeps it alive until it has extracted
        return digest

    def _extract_here(self, name: str, source: Path, dest: Path) -> None:
        # A fork costs more than a small package's extraction (~5 ms on a VM, for a parent
        # with rattler loaded): those are extracted here, while the children do big ones.
        try:
            extract(source, dest)
            extractchild.write_entries(dest, name)
        except Exception as exc:  # noqa: BLE001 - rattler raises one opaque type per cause
            self._failed(name, str(exc).strip().encode())
        finally:
            source.unlink(missing_ok=True)

    def _piped_feed(
        self,
        name: str,
        size: int,
        stream: Readable,
        each: Callable[[bytes], object],
        work: Path,
        path: Path,
    ) -> str:
        read_end, write_end = os.pipe()
        with suppress(OSError):  # a smaller pipe only means more wake-ups
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        # The child opens the pipe by this name: its own fd, reached through /proc/self.
        path.symlink_to(_PROC_FD / str(read_end))
        self._wait_for_slot()
        try:
            self._spawn(_Job(name, work, path, 0), path, close_in_child=write_end)
        finally:
            os.close(read_end)
        broken = False

        def send(chunk: bytes) -> None:
            nonlocal broken
            view = memoryview(chunk)
            while view and not broken:
                try:
                    view = view[os.write(write_end, view) :]
                except BrokenPipeError:
                    broken = True  # the child gave up; its error is read when it is reaped
            each(chunk)

        try:
            # Hashed to the end even if the child stopped reading: the digest covers it all.
            return hash_stream(stream, each=send).sha256
        finally:
            os.close(write_end)

    def _spawn(self, job: _Job, source: Path, close_in_child: int | None = None) -> None:
        # A pipe, not a file: on a full disk the child could not write its error anywhere.
        job.errors, errors_in = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which ends in os._exit
            os.close(job.errors)
            extractchild.die_with(parent, errors_in)
            extractchild.run(source, job.work / "pkg", job.name, errors_in, close_in_child)
        os.close(errors_in)
        self._jobs[pid] = job

    def _wait_for_slot(self) -> None:
        while len(self._jobs) >= self._workers:
            self._reap_oldest()

    def _reap_oldest(self) -> None:
        # By pid, never os.wait(): that could reap a child some other code is waiting for.
        pid = next(iter(self._jobs))
        self._reap(os.waitpid(pid, 0))

    def _reap(self, waited: tuple[int, int]) -> None:
        pid, status = waited
        job = self._jobs.pop(pid, None)
        if job is None:
            return
        job.source.unlink(missing_ok=True)  # extracted: the archive's bytes are not needed
        self._staged -= job.staged
        told = _read_all(job.errors)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            self._failed(job.name, told, status)

    def _failed(self, name: str, told: bytes, status: int = 1) -> None:
        # rattler quotes raw tar headers in some errors: NULs and newlines, one line here.
        text = re.sub(r"[\x00-\x1f]+", " ", told.decode(errors="replace")).strip()
        said = cause_text(RuntimeError(text)) if text else f"extraction failed ({status})"
        self._failures.append(f"{name}: {said}")

    def finish(self) -> dict[str, Path]:
        """Wait for every child; member name → its extracted package directory."""
        while self._jobs:
            self._reap_oldest()
        if any(words in failure for failure in self._failures for words in _NO_SPACE):
            # The caller says it the way every full disk is said, with the output dir.
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self._failures:
            raise InstallError(f"could not extract {self._failures[0]}")
        return self.dirs

    def entries(self, name: str, package: Path) -> list[Entry]:
        """Member `name`'s file list, made where it was extracted; `package` is its directory
        now (place() renames it), read again only if no list was left."""
        return extractchild.read_entries(
            self.dirs[name].parent / extractchild.ENTRIES, package, name
        )

    def abort(self) -> None:
        for pid in self._jobs:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # only our own children, by pid
        while self._jobs:
            try:
                self._reap_oldest()
            except ChildProcessError:
                self._jobs.pop(next(iter(self._jobs)))


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def place(dirs: dict[str, Path], keys: dict[str, str], cache: Path) -> None:
    """Move each extracted package to the name rattler's cache gives its record."""
    cache.mkdir(parents=True, exist_ok=True)
    for member, key in sorted(keys.items()):
        target = cache / key
        if target.exists():
            raise ArchiveError(f"{member}: a second package for {key} in the archive")
        dirs[member].rename(target)

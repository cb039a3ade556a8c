"""One root exception; the CLI turns each into a single `error:` line and an exit code."""

import errno
from pathlib import Path


class EnvpackError(Exception):
    """Anything a user can cause. The message is one line saying what is wrong and what to do."""

    exit_code = 1


class UsageError(EnvpackError):
    """Options that contradict each other or take a value that cannot work."""

    exit_code = 2


class LockError(EnvpackError):
    """The lock file is missing, invalid, or lacks the requested environment or platform."""


class UnsupportedEntryError(EnvpackError):
    """The lock holds entries envpack cannot ship (source packages, sdists, …)."""


class FetchError(EnvpackError):
    """A download failed for good (404, retries exhausted, …)."""


class HashMismatchError(FetchError):
    """Bytes did not match the hash the lock or manifest promised."""


class ArchiveError(EnvpackError):
    """The archive is corrupt, unsafe, or of an unknown format."""


class IncompatibleTargetError(EnvpackError):
    """The archive was made for another platform or needs a newer glibc."""


class InstallError(EnvpackError):
    """Linking the environment failed."""


class OutputError(EnvpackError):
    """The destination cannot be written (exists, unwritable, disk full)."""


class WheelError(EnvpackError):
    """A PyPI wheel does not fit the environment, is corrupt, or would write outside it."""


def output_error(path: Path, exc: OSError, doing: str) -> OutputError:
    """An OSError while writing `path` (`doing` is e.g. "writing"), said the way users need."""
    if exc.errno == errno.ENOSPC:
        return OutputError(f"no space left on the device {doing} {path}; free some space")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path}: {exc.strerror}")
    return OutputError(f"failed {doing} {path}: {exc.strerror or exc}")

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


class ImageError(EnvpackError):
    """A base image that cannot be read or used, or an image that cannot be built."""


class InstallError(EnvpackError):
    """Linking the environment failed."""


class RegistryError(EnvpackError):
    """An OCI registry cannot be reached, refuses us, or lacks or garbles what we asked for."""


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


def cause_text(exc: BaseException, limit: int = 300) -> str:
    """A library error (rattler's above all) as one short clause, each cause said once.

    rattler's message is its first line plus `Caused by:` lines that often repeat it, and
    its clauses nest ("invalid zip archive: invalid Zip archive: ..."): keep each once.
    """
    lines = [" ".join(line.replace("\x00", " ").split()) for line in str(exc).splitlines()]
    clauses: list[str] = []
    for line in lines:
        for clause in line.removeprefix("Caused by: ").split(": "):
            clause = clause.strip()
            if clause and all(clause.lower() != seen.lower() for seen in clauses):
                clauses.append(clause)
    text = ": ".join(clauses) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."

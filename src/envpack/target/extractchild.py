"""What a forked extraction child runs: extract one package, list the files it will link,
tell the parent how it went, and die with the parent.

The list (pkgcheck.extracted_entries, through rattler's paths.json reader) was made by the
parent after every package was extracted: ~0.13 s for the bench env's 15,500 paths, one
core busy while the other idled. A child makes it right after extracting, while the reader
still reads, and leaves it beside the package as JSON for the parent's check.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from contextlib import suppress
from pathlib import Path

from rattler.package_streaming import extract

from envpack.core.errors import InstallError
from envpack.target.pkgcheck import Entry, extracted_entries

ENTRIES = "entries.json"  # beside the package's directory, in the child's work dir


# A SIGKILLed envunpack must not leave children behind: they would keep writing into the
# staging dir and hold its lock (inherited), so the next run could not remove it. No ctypes
# (left out of the static build), so no PR_SET_PDEATHSIG: instead the kernel SIGKILLs the
# child when the last reader of its error pipe closes it. That reader is the parent, and
# younger children that inherited it, which die the same way first. (Comments, not
# docstrings: the frozen envunpack carries docstrings, and its bytes are counted.)
def die_with(parent: int, errors: int) -> None:  # pragma: no cover - runs in the child
    fcntl.fcntl(errors, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(errors, fcntl.F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(errors, fcntl.F_SETFL, fcntl.fcntl(errors, fcntl.F_GETFL) | os.O_ASYNC)
    if os.getppid() != parent:  # it died before the lines above took effect
        os._exit(1)


# The child's whole life: it ends in os._exit, 0 once the package and its list are written.
def run(
    source: Path, dest: Path, member: str, errors: int, close: int | None
) -> None:  # pragma: no cover
    code = 1
    try:
        if close is not None:
            os.close(close)  # else this child would hold its own pipe open and never see EOF
        extract(source, dest)
        write_entries(dest, member)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes to the parent as text
        with suppress(BaseException):  # the exit code says it failed even if this cannot
            os.write(errors, (str(exc).strip() or repr(exc)).encode()[:4000])
    finally:
        os._exit(code)


def write_entries(dest: Path, member: str) -> None:
    """The extracted package's file list, or why it has none, as JSON beside `dest`."""
    listed: dict[str, object]
    try:
        listed = {"entries": [[e.path, e.softlink] for e in extracted_entries(dest, member)]}
    except InstallError as exc:  # said when the lists are checked, in the parent's order
        listed = {"error": str(exc)}
    (dest.parent / ENTRIES).write_text(json.dumps(listed))


def read_entries(listing: Path, package: Path, member: str) -> list[Entry]:
    """What write_entries left in `listing`; read from `package` itself if nothing is."""
    try:
        listed = json.loads(listing.read_bytes())
    except (OSError, ValueError):
        return extracted_entries(package, member)
    if "error" in listed:
        raise InstallError(listed["error"])
    return [Entry(path, softlink) for path, softlink in listed["entries"]]

"""Offline wheel installs on the target, with pypa `installer`.

Nothing here runs the environment's python or pip: which wheels fit comes from the python
conda record (version, free-threading, site-packages path), and the files are written by
`installer` into the staging prefix, with console scripts naming the python at the final
prefix. Each wheel is verified against its own RECORD before anything is written (the
archive's sha256 was checked already, so every wheel is verified twice).

Unpack side: imported by the frozen envunpack, so no packer-only modules here.
"""

from __future__ import annotations

import io
import os
import posixpath
import shlex
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.records import RecordEntry, parse_record_file
from installer.sources import WheelFile
from installer.utils import Scheme

from envpack.core.errors import WheelError
from envpack.core.pathsafety import is_plain_relative
from envpack.core.progress import Reporter
from envpack.core.wheeltags import PythonInfo

INSTALLER_NAME = "envpack"


def install_wheels(
    prefix: Path,
    final_prefix: Path,
    wheels: Mapping[str, Path],
    python: PythonInfo,
    reporter: Reporter,
) -> int:
    """Install each wheel into the staging `prefix`, scripts naming the `final_prefix` python.

    `wheels` maps archive member names (`pypi/<file>.whl`) to the verified files in staging.
    Returns how many were installed.
    """
    prefix.mkdir(parents=True, exist_ok=True)  # symlink checks below stop at the prefix
    bar = reporter.bar("wheels", len(wheels), "wheel")
    try:
        for _member, path in sorted(wheels.items()):
            reporter.debug(f"installing wheel {path.name}")
            _install_one(prefix, final_prefix, path, python, reporter)
            bar.update(1)
    finally:
        bar.close()
    return len(wheels)


def _install_one(
    prefix: Path, final_prefix: Path, path: Path, python: PythonInfo, reporter: Reporter
) -> None:
    name = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            source = WheelFile(archive)
            # All checks before the first write: a bad wheel leaves nothing half-installed.
            _verify(archive, source, name)
            destination = _GuardedDestination(
                scheme_dict=_scheme(prefix, python, source.distribution),
                # The env's python at its final location: we install into staging, run there.
                interpreter=str(final_prefix / python.interpreter),
                script_kind="posix",
                prefix=str(prefix),
                wheel=name,
            )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                install(source, destination, {"INSTALLER": f"{INSTALLER_NAME}\n".encode()})
            for warning in caught:
                # installer skips `__pycache__` members (numpy ships one); nothing to act on.
                reporter.debug(f"{name}: {warning.message}")
    except WheelError:
        raise
    except FileExistsError as exc:
        raise WheelError(
            f"{name} would overwrite {_relative(exc, prefix)}, which another package installed; "
            "the lock has the same files from conda and PyPI"
        ) from None
    except (InstallerError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise WheelError(f"cannot install {name}: {_describe(exc)}") from None


def verify_wheel(path: Path) -> None:
    """Check a wheel file without installing it: safe names, and every file against RECORD."""
    try:
        with zipfile.ZipFile(path) as archive:
            _verify(archive, WheelFile(archive), path.name)
    except WheelError:
        raise
    except (InstallerError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise WheelError(f"{path.name} is not a valid wheel: {_describe(exc)}") from None


def _verify(archive: zipfile.ZipFile, source: WheelFile, name: str) -> None:
    check_member_names(archive.namelist(), name)
    check_member_names(_record_paths(source), f"{name} RECORD")
    # Hash and size of every member against RECORD: the second check after the archive's sha256.
    source.validate_record(validate_contents=True)


def _scheme(prefix: Path, python: PythonInfo, distribution: str) -> dict[str, str]:
    site_packages = str(prefix / python.site_packages)
    return {
        "purelib": site_packages,
        "platlib": site_packages,
        "scripts": str(prefix / "bin"),
        "data": str(prefix),
        "headers": str(prefix / python.include / distribution),
    }


def _record_paths(source: WheelFile) -> list[str]:
    try:
        lines = source.read_dist_info("RECORD").splitlines()
    except KeyError:
        raise WheelError(f"{source.distribution} wheel has no RECORD") from None
    return [row[0] for row in parse_record_file(lines)]


def check_member_names(names: Iterable[str], where: str) -> None:
    """Refuse absolute paths, `..`, backslashes and NULs in a wheel's member or RECORD names."""
    for name in names:
        if not is_plain_relative(name.rstrip("/")):
            # A wheel is untrusted input: such a name would write outside the environment.
            raise WheelError(f"{where}: unsafe path {name!r} (absolute, '..', or odd characters)")


@dataclass
class _GuardedDestination(SchemeDictionaryDestination):
    """installer's destination, plus the checks it leaves to us (symlinks, conda-meta)."""

    prefix: str = ""
    wheel: str = ""

    def __post_init__(self) -> None:
        self._real_prefix = os.path.realpath(self.prefix)

    def write_file(
        self, scheme: Scheme, path: str | os.PathLike[str], stream: BinaryIO, is_executable: bool
    ) -> RecordEntry:
        if scheme != "scripts":
            return super().write_file(scheme, path, stream, is_executable)
        # installer's fix_shebang writes `#!<interpreter>` verbatim, which breaks for a final
        # prefix with a space or past the kernel's 127-byte shebang limit; console scripts
        # get installer's /bin/sh trampoline for that case, so `#!python` scripts get it too.
        data = stream.read()
        if data.startswith(b"#!python"):
            _, _, rest = data.partition(b"\n")
            data = _shebang(self.interpreter) + b"\n" + rest
        return self.write_to_fs(scheme, os.fspath(path), io.BytesIO(data), is_executable)

    def write_to_fs(
        self, scheme: Scheme, path: str, stream: BinaryIO, is_executable: bool
    ) -> RecordEntry:
        target = os.path.normpath(os.path.join(self.scheme_dict[scheme], path))  # noqa: PTH118
        relative = os.path.relpath(target, self.prefix)
        # installer checks `..` against each scheme dir; we check the whole prefix as well.
        if relative == ".." or relative.startswith("../"):
            raise WheelError(f"{self.wheel}: {path!r} would be written outside the environment")
        # The env's identity as a conda prefix belongs to conda packages, not to wheels.
        if posixpath.normpath(relative).split("/")[0] == "conda-meta":
            raise WheelError(f"{self.wheel}: refusing to write into conda-meta ({path!r})")
        # Writing through a symlink (or into a symlinked dir) could land outside the prefix.
        if Path(target).is_symlink():
            raise WheelError(f"{self.wheel}: {relative} is a symlink; refusing to write through it")
        parent = _existing_parent(Path(target).parent)
        real_parent = os.path.realpath(parent)
        if os.path.commonpath([real_parent, self._real_prefix]) != self._real_prefix:
            raise WheelError(f"{self.wheel}: {relative} resolves outside the environment")
        return super().write_to_fs(scheme, path, stream, is_executable)


def _shebang(interpreter: str) -> bytes:
    """The shebang installer (after distlib) gives console scripts, for raw scripts too."""
    executable = interpreter.encode()
    if b" " not in executable and len(executable) + 3 <= 127:
        return b"#!" + executable
    # /bin/sh runs the second line; python sees a string literal and carries on.
    quoted = shlex.quote(interpreter).encode()
    return b"#!/bin/sh\n'''exec' " + quoted + b' "$0" "$@"\n' + b"' '''"


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _relative(exc: FileExistsError, prefix: Path) -> str:
    text = str(exc).removeprefix("File already exists: ")
    try:
        return str(Path(text).relative_to(prefix))
    except ValueError:
        return text


def _describe(exc: BaseException) -> str:
    issues = getattr(exc, "issues", None)
    if isinstance(issues, list) and issues:
        first = str(issues[0])
        return first if len(issues) == 1 else f"{first} (and {len(issues) - 1} more problems)"
    text = str(exc).strip()
    if isinstance(exc, KeyError):
        return f"missing {text}"
    return text.splitlines()[0] if text else type(exc).__name__

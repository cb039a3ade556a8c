"""Offline wheel installs on the target, with pypa `installer`; tags from the python record.

Nothing here runs the environment's python or pip: which wheels fit comes from the python
conda record (version, free-threading, site-packages path), and the files are written by
`installer` into the staging prefix, with console scripts naming the python at the final
prefix. Each wheel is verified against its own RECORD before anything is written (the
archive's sha256 was checked already, so every wheel is verified twice).

Unpack side: imported by the frozen envunpack, so no packer-only modules here.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import shlex
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import rattler
from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.records import RecordEntry, parse_record_file
from installer.sources import WheelFile
from installer.utils import Scheme
from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envpack.errors import WheelError
from envpack.pathsafety import unsafe
from envpack.progress import Reporter

INSTALLER_NAME = "envpack"
# pixi's default system requirement for Linux (glibc 2.28): what pixi resolved wheels for
# when the lock does not say otherwise.
DEFAULT_GLIBC = "2.28"
# pixi's default macOS system requirement; only used for the pack-time check of osx locks.
DEFAULT_MACOS = "13.0"

_VERSION = re.compile(r"(\d+)\.(\d+)")
# conda-forge's free-threaded CPython: build `..._cp313t`, or `python_abi 3.13.* *_cp313t`.
_FREE_THREADED = re.compile(r"_cp\d+t\b")
_LINUX_ARCHS = {
    "linux-64": "x86_64",
    "linux-32": "i686",
    "linux-aarch64": "aarch64",
    "linux-armv7l": "armv7l",
    "linux-ppc64le": "ppc64le",
    "linux-ppc64": "ppc64",
    "linux-s390x": "s390x",
}
_MAC_ARCHS = {"osx-64": "x86_64", "osx-arm64": "arm64"}
_WINDOWS = {"win-64": "win_amd64", "win-32": "win32", "win-arm64": "win_arm64"}
# PEP 600's aliases for the manylinux tags that came before it.
_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


@dataclass(frozen=True)
class PythonInfo:
    """The environment's python, as its conda record describes it. Paths are prefix-relative."""

    version: tuple[int, int]
    site_packages: str
    interpreter: str
    implementation: Literal["cp", "pp"] = "cp"
    free_threaded: bool = False

    @property
    def abi(self) -> str:
        """`cp311`, or `cp313t` for a free-threaded build."""
        return f"cp{self.version[0]}{self.version[1]}{'t' if self.free_threaded else ''}"

    @property
    def interpreter_tag(self) -> str:
        return f"{self.implementation}{self.version[0]}{self.version[1]}"

    @property
    def label(self) -> str:
        name = "CPython" if self.implementation == "cp" else "PyPy"
        threaded = " (free-threaded)" if self.free_threaded else ""
        return f"{name} {self.version[0]}.{self.version[1]}{threaded}"

    @property
    def include(self) -> str:
        return (
            f"include/python{self.version[0]}.{self.version[1]}{'t' if self.free_threaded else ''}"
        )


# --- the python record -----------------------------------------------------------------------


def python_info(source: Sequence[rattler.RepoDataRecord] | Path) -> PythonInfo:
    """From the records about to be linked, or from an installed prefix's conda-meta."""
    if isinstance(source, Path):
        return _python_info_from_prefix(source)
    for record in source:
        if record.name.normalized == "python":
            return python_info_from_fields(
                {
                    "version": str(record.version),
                    "build": str(record.build),
                    "depends": list(record.depends),
                    "python_site_packages_path": record.python_site_packages_path,
                }
            )
    raise WheelError(
        "the environment has PyPI wheels but no python package to install them for; "
        "add python to the environment"
    )


def python_info_from_fields(fields: Mapping[str, object]) -> PythonInfo:
    """From a python record as JSON fields (repodata, conda-meta, or a pack-side Download)."""
    version_text = str(fields.get("version", ""))
    match = _VERSION.match(version_text)
    if match is None:
        raise WheelError(f"cannot tell the python version from the python record {version_text!r}")
    version = (int(match.group(1)), int(match.group(2)))
    build = str(fields.get("build", ""))
    depends = fields.get("depends")
    abi_depends = [
        str(d)
        for d in (depends if isinstance(depends, list) else [])
        if str(d).startswith("python_abi")
    ]
    implementation: Literal["cp", "pp"] = "pp" if "pypy" in build else "cp"
    threaded = bool(_FREE_THREADED.search(build)) or any(
        _FREE_THREADED.search(d) for d in abi_depends
    )
    suffix = f"{version[0]}.{version[1]}{'t' if threaded else ''}"
    site_packages = str(
        fields.get("python_site_packages_path") or f"lib/python{suffix}/site-packages"
    )
    # The record decides where files go, so it must not point outside the prefix (CEP 17).
    if not _is_safe_relative(site_packages):
        raise WheelError(f"the python record's site-packages path {site_packages!r} is unsafe")
    return PythonInfo(
        version=version,
        site_packages=site_packages,
        interpreter=f"bin/python{suffix}",
        implementation=implementation,
        free_threaded=threaded,
    )


def _python_info_from_prefix(prefix: Path) -> PythonInfo:
    for meta in sorted((prefix / "conda-meta").glob("python-[0-9]*.json")):
        try:
            fields = json.loads(meta.read_text())
        except (OSError, ValueError) as exc:
            raise WheelError(f"cannot read {meta}: {exc}") from None
        if isinstance(fields, dict) and fields.get("name") == "python":
            return python_info_from_fields(fields)
    raise WheelError(
        f"{prefix} has no python package (conda-meta/python-*.json) to install wheels for"
    )


# --- tags ------------------------------------------------------------------------------------


def supported_tags(
    python: PythonInfo, platform: str, glibc: str | None, *, macos: str | None = None
) -> set[Tag]:
    """Every wheel tag the environment accepts, computed for the target, not for this host."""
    platforms = platform_tags(platform, glibc, macos=macos)
    tags: set[Tag] = set()
    if python.implementation == "cp":
        tags.update(cpython_tags(python.version, abis=[python.abi], platforms=platforms))
    # py3-none-<platform>, <interp>-none-any, py3X-none-any and friends. PyPy gets only these.
    tags.update(compatible_tags(python.version, python.interpreter_tag, platforms))
    return tags


def platform_tags(platform: str, glibc: str | None, *, macos: str | None = None) -> list[str]:
    """Platform tags of a conda subdir, best first."""
    if platform in _LINUX_ARCHS:
        arch = _LINUX_ARCHS[platform]
        return [*_manylinux_tags(arch, glibc or DEFAULT_GLIBC), f"linux_{arch}"]
    if platform in _MAC_ARCHS:
        major, minor = _major_minor(macos or DEFAULT_MACOS, "macOS")
        return list(mac_platforms((major, minor), _MAC_ARCHS[platform]))
    if platform in _WINDOWS:
        return [_WINDOWS[platform]]
    raise WheelError(f"PyPI wheels are not supported for platform {platform}")


def _manylinux_tags(arch: str, glibc: str) -> Iterator[str]:
    # packaging only lists manylinux tags for the glibc of the running host; we need them for
    # the target's glibc, which is a different machine (the PEP 600 rule is this simple).
    major, minor = _major_minor(glibc, "glibc")
    if major != 2:
        raise WheelError(f"unexpected glibc version {glibc}")
    oldest = 5 if arch in ("x86_64", "i686") else 17
    for glibc_minor in range(minor, oldest - 1, -1):
        yield f"manylinux_2_{glibc_minor}_{arch}"
        if legacy := _LEGACY_MANYLINUX.get(glibc_minor):
            yield f"{legacy}_{arch}"


def _major_minor(version: str, what: str) -> tuple[int, int]:
    match = _VERSION.match(version)
    if match is None:
        raise WheelError(f"cannot read the {what} version {version!r}")
    return int(match.group(1)), int(match.group(2))


def wheel_tags(filename: str) -> frozenset[Tag]:
    try:
        return parse_wheel_filename(filename)[3]
    except InvalidWheelFilename as exc:
        raise WheelError(f"{filename} is not a valid wheel file name ({exc})") from None


def check_wheel_compatible(
    filename: str, python: PythonInfo, platform: str, glibc: str | None, *, macos: str | None = None
) -> None:
    """Refuse a wheel whose tags the environment's python on the target platform cannot use."""
    check_wheels_compatible([filename], python, platform, glibc, macos=macos)


def check_wheels_compatible(
    filenames: Iterable[str],
    python: PythonInfo,
    platform: str,
    glibc: str | None,
    *,
    macos: str | None = None,
) -> None:
    """Like check_wheel_compatible, but names every offender in one error."""
    supported = supported_tags(python, platform, glibc, macos=macos)
    problems = []
    for filename in filenames:
        tags = wheel_tags(filename)
        if not tags & supported:
            problems.append(f"{filename} ({_why(tags, supported, python, platform, glibc)})")
    if problems:
        target = f"{python.label} on {platform}"
        if platform in _LINUX_ARCHS:
            target += f" with glibc {glibc or DEFAULT_GLIBC}"
        raise WheelError(
            f"wheels incompatible with the environment's {target}: " + "; ".join(problems)
        )


def _why(
    tags: frozenset[Tag], supported: set[Tag], python: PythonInfo, platform: str, glibc: str | None
) -> str:
    """The most useful reason a wheel does not fit: python, platform, or glibc."""
    interpreters = {(t.interpreter, t.abi) for t in supported}
    if not any((t.interpreter, t.abi) in interpreters for t in tags):
        built = ", ".join(sorted({f"{t.interpreter}-{t.abi}" for t in tags}))
        return f"built for {built}, not {python.label}"
    platforms = {t.platform for t in supported}
    arch = _LINUX_ARCHS.get(platform)
    needed = [
        _major_minor(m.group(1).replace("_", "."), "glibc")
        for t in tags
        if arch and (m := re.fullmatch(rf"manylinux_(\d+_\d+)_{arch}", t.platform))
    ]
    if needed and not any(t.platform in platforms for t in tags):
        lowest = min(needed)
        return f"needs glibc {lowest[0]}.{lowest[1]}, the target has {glibc or DEFAULT_GLIBC}"
    built = ", ".join(sorted({t.platform for t in tags}))
    return f"built for {built}, not {platform}"


# --- installing ------------------------------------------------------------------------------


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
        if not _is_safe_relative(name.rstrip("/")):
            # A wheel is untrusted input: such a name would write outside the environment.
            raise WheelError(f"{where}: unsafe path {name!r} (absolute, '..', or odd characters)")


def _is_safe_relative(name: str) -> bool:
    # RECORD paths are written by tools, never with empty or `.` components: refuse those too.
    return unsafe(name) is None and all(part not in ("", ".") for part in name.split("/"))


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

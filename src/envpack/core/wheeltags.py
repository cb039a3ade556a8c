"""Which wheels fit an environment: the pure tag rules, shared by packer and target.

Which wheels fit comes from the python conda record (version, free-threading,
site-packages path) and the target's platform and glibc, never from running a python.
envpack checks a lock's wheels with these rules at pack time (wheelcheck.py) and envunpack
checks them again before installing, so the two cannot disagree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import rattler
from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envpack.core.errors import WheelError
from envpack.core.pathsafety import is_plain_relative

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
    if not is_plain_relative(site_packages):
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


def check_wheels_compatible(
    filenames: Iterable[str],
    python: PythonInfo,
    platform: str,
    glibc: str | None,
    *,
    macos: str | None = None,
) -> None:
    """Refuse wheels whose tags the env's python on the target cannot use; name them all."""
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

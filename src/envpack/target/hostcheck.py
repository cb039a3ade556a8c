"""Does this machine fit the archive? Platform and glibc, checked before anything is written."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import rattler

from envpack.core.errors import IncompatibleTargetError
from envpack.target.runtime import static_program


def host_platform() -> str:
    return str(rattler.Subdir.current())


def host_virtual_packages() -> dict[str, str]:
    """name → version of what rattler detects here (honours CONDA_OVERRIDE_GLIBC and friends)."""
    detected: dict[str, str] = {}
    # from_env: CONDA_OVERRIDE_GLIBC and friends let users (and tests) state what they know.
    for package in rattler.VirtualPackage.detect(rattler.VirtualPackageOverrides.from_env()):
        generic = package.into_generic()
        detected[generic.name.normalized] = str(generic.version)
    if static_program() is not None and "CONDA_OVERRIDE_GLIBC" not in os.environ:
        # Under staticx, rattler asks the glibc loaded in this process: the one bundled into
        # the static envunpack, not the host's. The host's own libc file tells the truth.
        detected.pop("__glibc", None)
        glibc = glibc_from_files()
        if glibc is not None:
            detected["__glibc"] = glibc
    return detected


# Where distributions keep libc.so.6 (Debian/Ubuntu multiarch, RHEL/SUSE lib64, Arch).
_LIBC_DIRS = (
    "/lib/{triplet}",
    "/usr/lib/{triplet}",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)
_TRIPLETS = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}
_GLIBC_BANNER = re.compile(rb"GNU C Library [^\n]*?version (\d+\.\d+)")


def glibc_from_files() -> str | None:
    """The host glibc's version, read from its libc.so.6's banner; None if there is none."""
    for path in libc_paths(platform.machine()):
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        found = glibc_in_libc(data)
        if found:
            return found
    return None


def libc_paths(machine: str) -> list[str]:
    """Where libc.so.6 may be on a root for `machine` (x86_64, aarch64), in search order."""
    triplet = _TRIPLETS.get(machine, "")
    return [str(Path(d.format(triplet=triplet)) / "libc.so.6") for d in _LIBC_DIRS]


def glibc_in_libc(data: bytes) -> str | None:
    """The version in a libc.so.6's "GNU C Library ... version X.Y" banner."""
    match = _GLIBC_BANNER.search(data)
    return match.group(1).decode() if match else None


def check_platform(wanted: str, host: str) -> None:
    if wanted not in (host, "noarch"):
        raise IncompatibleTargetError(
            f"this archive is for {wanted}, but this machine is {host}; "
            f"pack it again with `envpack --platform {host}`"
        )


def check_virtual_packages(required: tuple[str, ...], host: dict[str, str]) -> None:
    """Refuse early when the host lacks what the packages link against (glibc above all)."""
    for spec_text in required:
        try:
            spec = rattler.MatchSpec(spec_text)
        except Exception:  # noqa: BLE001, S112 - an unparsable hint is no reason to refuse
            continue
        if spec.name.normalized != "__glibc":
            continue  # __unix, __linux, __archspec: the platform check already covers them
        have = host.get("__glibc")
        if have is None:
            raise IncompatibleTargetError(
                f"this environment needs glibc ({spec_text.removeprefix('__glibc').strip()}), "
                "but no glibc was found on this machine; use a glibc-based Linux"
            )
        wanted = spec.version
        if wanted and not rattler.VersionSpec(wanted).matches(rattler.Version(have)):
            raise IncompatibleTargetError(
                f"this environment needs glibc {spec_text.removeprefix('__glibc').strip()}, "
                f"but this machine has glibc {have}; use a newer distribution "
                "(or set CONDA_OVERRIDE_GLIBC if you know better)"
            )

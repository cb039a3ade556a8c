"""Pack side: do the plan's wheels fit its python and platform? Also `--inject x.whl`.

The tag rules are shared with the unpacker (envpack.core.wheeltags), so pack and unpack
cannot disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envpack.core.errors import WheelError
from envpack.core.hashing import hash_file
from envpack.core.models import Artifact, Download, Plan
from envpack.core.wheeltags import (
    DEFAULT_GLIBC,
    DEFAULT_MACOS,
    PythonInfo,
    check_wheels_compatible,
    python_info_from_fields,
)

_LOWER_BOUND = re.compile(r">=\s*(\d+(?:\.\d+)*)")


def check_plan_wheels(plan: Plan) -> None:
    """Refuse, before downloading anything, wheels the environment could not use."""
    wheels = [d.artifact.filename for d in plan.downloads if d.artifact.kind == "wheel"]
    if not wheels:
        return
    check_wheels_compatible(
        wheels,
        plan_python(plan),
        plan.platform,
        target_version(plan.virtual_packages, "__glibc", DEFAULT_GLIBC),
        macos=target_version(plan.virtual_packages, "__osx", DEFAULT_MACOS),
    )


def plan_python(plan: Plan) -> PythonInfo:
    for download in plan.downloads:
        if download.artifact.kind == "conda" and download.artifact.name == "python":
            fields = {"version": download.artifact.version, "build": download.artifact.build}
            return python_info_from_fields({**fields, **download.record})
    raise WheelError(
        "the environment has PyPI wheels but no python package: add python to the "
        "environment, or pack it without the PyPI dependencies"
    )


def target_version(virtual_packages: tuple[str, ...], name: str, default: str) -> str:
    """The version the target is assumed to have: the lock's lower bound, or pixi's default.

    Bounds taken from package depends (`__glibc >=2.17`) are minimums, not what the target
    runs; pixi resolves wheels for its default system requirements unless the project
    declares newer ones, so the higher of the two is what the lock's wheels were chosen for.
    """
    best = _key(default)
    for spec in virtual_packages:
        if spec.split(" ", 1)[0] != name:
            continue
        for bound in _LOWER_BOUND.findall(spec):
            best = max(best, _key(bound))
    return ".".join(str(part) for part in best)


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def injected_wheel(path: Path) -> Download:
    """`--inject some.whl`: verified against its own RECORD, hashed, ready to ship."""
    if not path.is_file():
        raise WheelError(f"--inject {path}: no such file")
    try:
        name, version, _, _ = parse_wheel_filename(path.name)
    except InvalidWheelFilename as exc:
        raise WheelError(f"--inject {path}: not a wheel file name ({exc})") from None
    # Loaded here: installer's modules cost every pack ~25 ms of start-up, used by --inject only.
    from envpack.target.wheels import verify_wheel

    try:
        verify_wheel(path)
    except WheelError as exc:
        raise WheelError(f"--inject {path}: {exc}") from None
    got = hash_file(path)
    artifact = Artifact(
        kind="wheel",
        name=str(name),
        version=str(version),
        filename=path.name,
        sha256=got.sha256,
        size=got.size,
    )
    return Download(artifact=artifact, url=path.resolve().as_uri())

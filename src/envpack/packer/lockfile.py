"""pixi.lock (v4–v7, parsed by py-rattler) → the Plan for one environment and platform."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

import rattler
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envpack.core.errors import LockError, UnsupportedEntryError
from envpack.core.models import Artifact, Download, Plan
from envpack.packer.urls import redact

LOCK_NAME = "pixi.lock"
MANIFEST_NAMES = ("pixi.toml", "pyproject.toml")
# Fields a repodata.json entry may not carry: they describe where a file was found.
_LOCATION_FIELDS = ("fn", "url", "channel")


def find_lock(path: Path) -> Path:
    """Accept a lock file, a project directory holding `pixi.lock`, or a manifest beside it."""
    try:
        return _find_lock(path)
    except OSError as exc:  # EACCES on a parent: is_dir() raises rather than saying False
        raise LockError(f"cannot read {path}: {exc.strerror}") from None


def _find_lock(path: Path) -> Path:
    if path.is_dir() and not (path / LOCK_NAME).exists():
        # A project without its lock yet: name the manifest that needs `pixi lock`.
        path = next((path / m for m in MANIFEST_NAMES if (path / m).is_file()), path)
    if path.name in MANIFEST_NAMES and not path.is_dir():
        # pixi-pack takes the manifest, as pixi does; the lock beside it is what we read.
        if not path.is_file():
            raise LockError(f"no manifest at {path}: pass a pixi.toml, pyproject.toml or pixi.lock")
        lock = path.parent / LOCK_NAME
        if not lock.is_file():
            raise LockError(f"no {LOCK_NAME} next to {path}; run `pixi lock`")
        return lock
    lock = path / LOCK_NAME if path.is_dir() else path
    if not lock.is_file():
        raise LockError(f"no lock file at {lock}: run `pixi lock` first, or pass the lock's path")
    return lock


def load_lock(lock: Path) -> tuple[rattler.LockFile, bytes]:
    try:
        data = lock.read_bytes()
    except OSError as exc:
        raise LockError(f"cannot read {lock}: {exc.strerror}") from None
    try:
        return rattler.LockFile.from_path(lock), data
    except Exception as exc:  # noqa: BLE001 - rattler raises its own zoo of types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # rattler quotes the offending entry, URL and token included: redact it.
        raise LockError(f"{lock} is not a valid pixi.lock: {redact(first)}") from None


def plan_lock(
    lock: Path,
    environment: str,
    platform: str,
    *,
    ignore_pypi_non_wheel: bool = False,
    strict: bool = False,
) -> tuple[Plan, list[str]]:
    """Read the lock and return the plan plus warnings (skipped entries)."""
    lock_file, data = load_lock(lock)
    env = lock_file.environment(environment)
    if env is None:
        names = ", ".join(sorted(name for name, _ in lock_file.environments())) or "none"
        raise LockError(f"environment {environment!r} is not in {lock.name} (it has: {names})")
    lock_platform = next((p for p in env.platforms() if p.name == platform), None)
    if lock_platform is None:
        # As pixi-pack: -p is a platform's name in the lock (v7 `jetson`) or its conda subdir.
        by_subdir = [p for p in env.platforms() if str(p.subdir) == platform]
        lock_platform = by_subdir[0] if len(by_subdir) == 1 else None
    if lock_platform is None:
        names = ", ".join(sorted(p.name for p in env.platforms())) or "none"
        raise LockError(
            f"environment {environment!r} is not locked for platform {platform!r} "
            f"(it is for: {names}); pick one with --platform"
        )
    downloads: list[Download] = []
    unsupported: list[str] = []
    skipped: list[str] = []
    sources: list[str] = []
    depends: list[str] = []
    for package in env.packages(lock_platform) or []:
        if isinstance(package, rattler.CondaLockedBinaryPackage):
            download = conda_download(package.repo_data_record())
            downloads.append(download)
            depends.extend(download.record.get("depends", []))  # type: ignore[arg-type]
        elif isinstance(package, rattler.PypiLockedPackage):
            wheel = _wheel_download(package, lock.parent)
            if wheel is None and _is_project_dir(package.location, lock.parent):
                sources.append(f"{package.name} ({package.location})")
            elif wheel is not None:
                downloads.append(wheel)
            elif ignore_pypi_non_wheel:
                skipped.append(f"{package.name} ({redact(package.location)})")
            else:
                unsupported.append(f"{package.name} ({redact(package.location)})")
        else:
            unsupported.append(f"{package.name} (conda source package {redact(package.location)})")
    if unsupported:
        raise UnsupportedEntryError(
            "cannot pack entries that are not built artifacts: "
            + ", ".join(unsupported)
            + "; build them first, or skip PyPI source distributions with --ignore-pypi-non-wheel"
        )
    if sources and strict:
        raise UnsupportedEntryError(
            f"cannot pack editable or path source dependencies: {', '.join(sources)}; build a "
            "wheel of each (e.g. `python -m build --wheel`) and pass it with --inject"
        )
    warnings = [f"skipping PyPI entry that is not a wheel: {s}" for s in skipped]
    if sources:
        warnings.append(
            f"skipping editable or path source dependencies: {', '.join(sources)}; to ship "
            "them, build a wheel of each and pass it with --inject (--strict refuses instead)"
        )
    virtual = _virtual_from_platform([str(v) for v in lock_platform.virtual_packages])
    virtual = virtual or _virtual_from_depends(depends)
    plan = Plan(
        environment=environment,
        platform=str(lock_platform.subdir),
        lock_sha256=hashlib.sha256(data).hexdigest(),
        virtual_packages=tuple(sorted(set(virtual))),
        downloads=tuple(sorted(downloads, key=lambda d: d.artifact.path)),
    )
    return plan, warnings


def _virtual_from_depends(depends: list[str]) -> list[str]:
    # Older locks only imply the target's needs through the packages' own `__glibc >=x`.
    return [d for d in depends if d.startswith("__")]


def _virtual_from_platform(declared: list[str]) -> list[str]:
    # Lock v7 declares what the target system provides (`__glibc=2.28`): as a requirement
    # on the host that reads "at least that version".
    specs = []
    for entry in declared:
        name, sep, version = entry.partition("=")
        specs.append(f"{name} >={version.split('=')[0]}" if sep and version else name)
    return specs


def conda_download(
    record: rattler.RepoDataRecord, *, url: str | None = None, filename: str | None = None
) -> Download:
    """A conda artifact and its repodata fields (without where it was found)."""
    fields = json.loads(record.to_json())
    for key in _LOCATION_FIELDS:
        fields.pop(key, None)
    artifact = Artifact(
        kind="conda",
        name=record.name.normalized,
        version=str(record.version),
        build=str(record.build),
        filename=filename or record.file_name,
        subdir=record.subdir,
        sha256=record.sha256.hex() if record.sha256 else None,
        md5=record.md5.hex() if record.md5 else None,
        size=record.size,
    )
    return Download(artifact=artifact, url=url or str(record.url), record=fields)


def _is_project_dir(location: str, lock_dir: Path) -> bool:
    """A local directory: pixi's editable installs (`pixi init --format pyproject` adds the
    project itself) and path dependencies, both built from source at install time.

    py-rattler 0.28 does not expose the lock's `editable` flag, but only a directory can be
    editable, and a non-editable directory is just as unshippable without a build.
    """
    location = location.removeprefix("direct+")
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(unquote(parts.path)).is_dir()
    if parts.scheme and len(parts.scheme) > 1:
        return False
    return (lock_dir / location).is_dir()


def _wheel_download(package: rattler.PypiLockedPackage, lock_dir: Path) -> Download | None:
    """A wheel to fetch, or None when the entry is an sdist, a VCS source or a directory."""
    location = package.location
    if location.startswith("direct+"):
        location = location[len("direct+") :]
    scheme = urlsplit(location).scheme
    if scheme in ("http", "https", "file"):
        url = location.split("#", 1)[0]
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    elif scheme == "" or len(scheme) == 1:  # a path; one letter would be a Windows drive
        path = (lock_dir / location).resolve()
        url = path.as_uri()
        filename = path.name
    else:
        return None  # git+https and friends are sources, not wheels
    if not filename.endswith(".whl"):
        return None
    try:
        name, version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    sha256, md5 = _wheel_hashes(package)
    artifact = Artifact(
        kind="wheel",
        name=str(name),
        version=str(version),
        filename=filename,
        sha256=sha256,
        md5=md5,
    )
    return Download(artifact=artifact, url=url)


def _wheel_hashes(package: rattler.PypiLockedPackage) -> tuple[str | None, str | None]:
    hashes = package.hashes
    if hashes is None:
        return None, None
    try:
        sha256, md5 = hashes.sha256, hashes.md5
    except AttributeError:  # py-rattler 0.28 wraps a missing hash as an empty object
        return None, None
    return (sha256.hex() if sha256 else None), (md5.hex() if md5 else None)

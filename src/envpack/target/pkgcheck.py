"""Refuse packages whose file lists could make linking write outside the env.

rattler links whatever `info/paths.json` names. A crafted package can name `../../etc/x`
(rattler removes it before failing), an absolute path (rattler panics), or a file under
`conda-meta/` or below another package's symlink. We check every package's list before
linking, and every symlink the linked env holds before it is renamed into place.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import rattler

from envpack.core.errors import InstallError
from envpack.core.pathsafety import Unsafe, unsafe

_METADATA_DIR = "conda-meta"


@dataclass(frozen=True)
class Entry:
    path: str
    softlink: bool


def package_entries(package: Path) -> list[Entry]:
    """The paths a package will link, from paths.json or (old packages) info/files."""
    try:
        paths = rattler.PathsJson.from_package_archive(package)
    except Exception:  # noqa: BLE001 - rattler's ExtractError covers both "missing" and "broken"
        return _legacy_entries(package)
    return [Entry(str(e.relative_path), bool(e.path_type.softlink)) for e in paths.paths]


def extracted_entries(directory: Path, member: str) -> list[Entry]:
    """The same list, read from a package already extracted to `directory`."""
    try:
        paths = rattler.PathsJson.from_package_directory(directory)
    except Exception:  # noqa: BLE001 - as above: missing or broken
        files = directory / "info" / "files"
        if not member.endswith(".tar.bz2") or not files.is_file():
            raise InstallError(
                f"{member.rsplit('/', 1)[-1]}: cannot read its file list "
                "(neither info/paths.json nor info/files)"
            ) from None
        lines = files.read_bytes().decode("utf-8", "replace").splitlines()
        return [Entry(line.strip(), False) for line in lines if line.strip()]
    return [Entry(str(e.relative_path), bool(e.path_type.softlink)) for e in paths.paths]


def _legacy_entries(package: Path) -> list[Entry]:
    # Packages from before paths.json (conda < 4.3) list their files in info/files.
    if not package.name.endswith(".tar.bz2"):
        raise InstallError(f"{package.name}: cannot read its file list (no info/paths.json)")
    try:
        with tarfile.open(package, "r:bz2") as tar:
            member = tar.extractfile("info/files")
            if member is None:
                raise KeyError("info/files")
            lines = member.read().decode("utf-8", "replace").splitlines()
    except (KeyError, OSError, tarfile.TarError, EOFError):
        raise InstallError(
            f"{package.name}: cannot read its file list (neither info/paths.json nor info/files)"
        ) from None
    return [Entry(line.strip(), False) for line in lines if line.strip()]


def check_entries(packages: Iterable[tuple[str, list[Entry]]]) -> dict[str, str]:
    """Every path plain and relative; nothing in conda-meta; nothing below a symlink.

    Returns which package owns each path, so later errors can name the package.
    """
    softlinks: dict[str, str] = {}
    listed: list[tuple[str, str]] = []
    for label, entries in packages:
        for entry in entries:
            _check_path(label, entry.path)
            listed.append((label, entry.path))
            if entry.softlink:
                softlinks[entry.path] = label
    for label, path in listed:
        parent = posixpath.dirname(path)
        while parent:
            # A file below a symlink would be written wherever the link points.
            if parent in softlinks:
                raise InstallError(
                    f"{label}: {path!r} lies below the symlink {parent!r} of "
                    f"{softlinks[parent]}; refusing to write through it"
                )
            parent = posixpath.dirname(parent)
    return {path: label for label, path in listed}


_PACKAGE_WORDS = {Unsafe.CLIMBS: "climbs out of the environment"}


def _check_path(label: str, path: str) -> None:
    why = unsafe(path)
    problem = _PACKAGE_WORDS.get(why, why.value) if why is not None else None
    if problem is None and path.split("/")[0] == _METADATA_DIR:
        problem = "would overwrite the environment's metadata"
    if problem:
        raise InstallError(f"{label}: file {path!r} {problem}; refusing to install it")


def _symlinks(top: Path) -> Iterator[Path]:
    """Every symlink below `top`, not following any: the dirents' types, no stat per file
    (a big env has ~17,000 entries and rglob + is_symlink stats each)."""
    pending = [top]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    yield Path(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))


def check_symlinks(prefix: Path, final: Path, owners: dict[str, str]) -> None:
    """No symlink in the linked env may point outside it (checked in staging, pre-rename)."""
    root = prefix.resolve()
    for link in _symlinks(prefix):
        target = link.readlink()
        if target.is_absolute():
            # An absolute target is only fine if it names the env at its final place.
            inside = target == final or final in target.parents
        else:
            # resolve() follows chains of links, so a hop through another link counts too.
            try:
                resolved = link.resolve()
            except (RuntimeError, OSError):  # a loop of links: nowhere to be trusted
                resolved = Path("/")
            inside = resolved == root or root in resolved.parents
        if not inside:
            rel = link.relative_to(prefix).as_posix()
            owner = owners.get(rel, "a package")
            raise InstallError(
                f"{owner}: symlink {rel!r} points outside the environment (-> {target}); "
                "refusing to install it"
            )

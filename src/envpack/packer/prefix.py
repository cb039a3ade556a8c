"""An installed conda prefix → the Plan that repacks it from its packages' original files.

The prefix's `conda-meta/*.json` records are the source of truth (conda-pack's job, done the
envpack way): the archive holds the original, hash-checked package files, never the prefix's
own files, so whatever pip or a hand edit changed there is reported instead of shipped.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import rattler
from packaging.utils import canonicalize_name

from envpack.core.errors import EnvpackError, LockError
from envpack.core.models import Download, Plan
from envpack.packer.fetch import Fetched
from envpack.packer.lockfile import conda_download
from envpack.packer.pkgcache import find_cached

META_DIR = "conda-meta"
# A prefix record's fields that describe this install, not the package: a repodata.json
# entry built from them would differ from the channel's.
_INSTALL_FIELDS: tuple[str, ...] = ("extracted_package_dir", "package_tarball_full_path")
_INSTALL_FIELDS += ("files", "paths_data", "link", "requested_spec", "requested_specs", "auth")
_SHOWN = 10


class PrefixError(EnvpackError):
    """The directory is not a conda prefix, or one of its records cannot be repacked."""


@dataclass(frozen=True)
class PrefixPlan:
    plan: Plan
    # Package files already found in a package cache and verified: nothing to download.
    local: tuple[Fetched, ...]
    warnings: tuple[str, ...]


def plan_prefix(
    prefix: Path,
    platform: str | None,
    caches: Sequence[Path],
    *,
    ignore_pip_installed: bool = False,
    shipped: frozenset[str] = frozenset(),
) -> PrefixPlan:
    """`shipped`: canonical names of wheels given with --inject, so their pip installs pass."""
    records = read_records(prefix)
    own = _platform(prefix, records, platform)
    downloads: list[Download] = []
    local: list[Fetched] = []
    for record in records:
        download = _download(record)
        found = find_cached(download, _candidates(record, caches))
        if found is not None:
            local.append(found)
        downloads.append(download)
    warnings = check_files(prefix, records, ignore_pip_installed, shipped)
    digest = hashlib.sha256()
    for d in sorted(downloads, key=lambda d: d.artifact.path):
        digest.update(f"{d.artifact.path} {d.artifact.sha256 or d.artifact.md5}\n".encode())
    plan = Plan(
        environment=prefix.resolve().name,
        platform=own,
        # No lock: this names the exact set of package files instead.
        lock_sha256=digest.hexdigest(),
        virtual_packages=tuple(
            sorted({str(d) for r in records for d in r.depends if str(d).startswith("__")})
        ),
        downloads=tuple(sorted(downloads, key=lambda d: d.artifact.path)),
    )
    return PrefixPlan(plan, tuple(local), tuple(warnings))


def read_records(prefix: Path) -> list[rattler.PrefixRecord]:
    meta = prefix / META_DIR
    if not meta.is_dir():
        raise PrefixError(
            f"{prefix} is not a conda environment (no {META_DIR}/ in it); pass the "
            "environment's root, e.g. .pixi/envs/default or ~/miniforge3/envs/NAME"
        )
    records = []
    for path in sorted(meta.glob("*.json")):
        try:
            records.append(rattler.PrefixRecord.from_path(path))
        except Exception as exc:  # noqa: BLE001 - rattler raises assorted types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            # rattler names the missing or bad field (a record without `url`, say).
            raise PrefixError(
                f"{path} is not a valid conda-meta record ({first}); reinstall that package"
            ) from None
    if not records:
        raise PrefixError(f"{prefix} has no packages installed ({META_DIR}/ holds no records)")
    return records


def _platform(prefix: Path, records: list[rattler.PrefixRecord], platform: str | None) -> str:
    subdirs = sorted({r.subdir for r in records} - {"noarch"})
    if len(subdirs) > 1:
        raise PrefixError(f"{prefix} mixes packages of several platforms: {', '.join(subdirs)}")
    own = subdirs[0] if subdirs else (platform or str(rattler.Subdir.current()))
    if platform is not None and platform != own:
        raise LockError(
            f"--platform {platform} disagrees with {prefix}, which is a {own} environment; "
            "drop --platform (a prefix is packed for its own platform)"
        )
    return own


def _download(record: rattler.PrefixRecord) -> Download:
    label = f"{record.name.normalized} {record.version} {record.build}"
    if record.sha256 is None and record.md5 is None:
        raise PrefixError(
            f"{label}: its conda-meta record has no sha256 or md5, so its package file cannot "
            "be verified; reinstall it with a current conda, mamba or pixi"
        )
    download = conda_download(record)
    fields = dict(download.record)
    for key in _INSTALL_FIELDS:
        fields.pop(key, None)
    return Download(artifact=download.artifact, url=download.url, record=fields)


# --- package caches --------------------------------------------------------------------------


def _candidates(record: rattler.PrefixRecord, caches: Sequence[Path]) -> Iterator[Path]:
    if record.package_tarball_full_path is not None:
        yield Path(record.package_tarball_full_path)
    if record.extracted_package_dir is not None:
        yield Path(record.extracted_package_dir).parent / record.file_name
    for cache in caches:
        yield cache / record.file_name
        yield cache / record.subdir / record.file_name  # pixi-pack's --use-cache layout


# --- files in the prefix ---------------------------------------------------------------------


def check_files(
    prefix: Path,
    records: list[rattler.PrefixRecord],
    ignore_pip_installed: bool = False,
    shipped: frozenset[str] = frozenset(),
) -> list[str]:
    """Refuse pip-installed dists; warn about changed and unowned files. Returns warnings."""
    owned: set[str] = set()
    changed: list[str] = []
    for record in records:
        entries = record.paths_data.paths
        owned.update(str(f) for f in record.files)
        for entry in entries:
            rel = str(entry.relative_path)
            owned.add(rel)
            if _changed(prefix / rel, entry):
                changed.append(rel)
    unowned = sorted(set(_walk(prefix)) - owned)
    dists, pip_files = _pip_dists(prefix, unowned)
    pip = [label for name, label in dists if name not in shipped]
    warnings = []
    if pip and not ignore_pip_installed:
        raise PrefixError(
            f"{prefix} holds packages pip installed, which no conda record describes: "
            + ", ".join(pip)
            + "; ship them as wheels with --inject, or leave them out with --ignore-pip-installed"
        )
    if pip:
        warnings.append(f"leaving out packages pip installed: {', '.join(pip)}")
    stray = [p for p in unowned if p not in pip_files and not _generated(p)]
    if changed:
        warnings.append(
            f"{len(changed)} files of conda packages were changed or deleted after install; "
            f"the archive holds the packages' original files: {_some(sorted(changed))}"
        )
    if stray:
        warnings.append(
            f"{len(stray)} files belong to no conda package and are not packed: {_some(stray)}"
        )
    return warnings


def _walk(prefix: Path) -> Iterator[str]:
    for top, dirs, files in os.walk(prefix):
        root = Path(top)
        rel_root = root.relative_to(prefix)
        if str(rel_root) == META_DIR:
            dirs[:] = []
            continue
        # walk() lists a symlink to a directory among the directories; it is a file to us.
        for name in files + [d for d in dirs if (root / d).is_symlink()]:
            yield str(rel_root / name)


def _changed(path: Path, entry: rattler.PrefixPathsEntry) -> bool:
    kind = entry.path_type
    if kind.directory:
        return False
    if kind.softlink:
        return not path.is_symlink() and not path.exists()
    if not path.is_file():
        return True
    expected = entry.sha256_in_prefix or (None if entry.prefix_placeholder else entry.sha256)
    if expected is None:
        return False  # a placeholder was replaced and the new hash not recorded: can't tell
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest() != expected.hex()


def _pip_dists(prefix: Path, unowned: list[str]) -> tuple[list[tuple[str, str]], set[str]]:
    """Dists whose `*.dist-info/METADATA` no record owns and whose INSTALLER isn't conda:
    (canonical name, label) each, and the files their RECORDs list."""
    names: list[tuple[str, str]] = []
    files: set[str] = set()
    for rel in unowned:
        parent = Path(rel).parent
        if not (parent.name.endswith(".dist-info") and Path(rel).name == "METADATA"):
            continue
        info = prefix / parent
        installer = _read(info / "INSTALLER") or "unknown installer"
        if installer == "conda":
            continue
        stem = info.name.removesuffix(".dist-info")
        names.append((canonicalize_name(stem.split("-")[0]), f"{stem} ({installer})"))
        for line in (_read(info / "RECORD") or "").splitlines():
            member = line.rsplit(",", 2)[0]
            if member:
                files.add(os.path.normpath(parent.parent / member))
        files.update(p for p in unowned if Path(p).is_relative_to(parent))
    return names, files


def _generated(rel: str) -> bool:
    # rattler tags every prefix it creates, and Python writes bytecode next to any module it
    # imports: neither is anyone's content.
    if rel == "CACHEDIR.TAG":
        return True
    return rel.endswith(".pyc") and f"{os.sep}__pycache__{os.sep}" in f"{os.sep}{rel}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _some(paths: list[str]) -> str:
    shown = ", ".join(paths[:_SHOWN])
    return shown + (f" (and {len(paths) - _SHOWN} more)" if len(paths) > _SHOWN else "")

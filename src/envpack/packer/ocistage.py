"""The image's env, installed at pack time below a staging root as if it were at its final path.

A verified pack (a folder written by `pack`) is read back through the unpacker's own checks,
linked with `rattler.install` into `<root>/<dest>` with `alternative_target_prefix=<dest>` (so
every placeholder names the final path, and no link script runs on the build machine), and
wheels go in one at a time so that each one's files are known for its layer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import rattler

from envpack.core.layout import SBOM_NAME
from envpack.core.models import Manifest
from envpack.core.progress import Reporter
from envpack.core.wheeltags import check_wheels_compatible, python_info
from envpack.packer.ocilayers import Part
from envpack.target.activation import activation_scripts, check_env_vars
from envpack.target.appinstall import activated_env
from envpack.target.hostcheck import check_virtual_packages
from envpack.target.install import link, records, write_history
from envpack.target.pkgcheck import check_entries, check_symlinks, package_entries
from envpack.target.receive import Reader
from envpack.target.wheels import install_wheels


@dataclass(frozen=True)
class Staged:
    root: Path  # the image's / as far as the env goes
    platform: str
    manifest: Manifest
    parts: tuple[Part, ...]  # a conda package's or a wheel's files, relative to root
    rest: tuple[str, ...]  # conda-meta, activation scripts, SBOM: the last layer
    env: dict[str, str]  # what rattler's activation exports, PATH only the env's entries
    sources_scripts: bool  # the env has activate.d scripts, which a config cannot run


def stage(
    pack_dir: Path,
    work: Path,
    dest: PurePosixPath,
    glibc: str | None,
    origins: Mapping[str, str],
    reporter: Reporter,
) -> Staged:
    """Install the pack in `pack_dir` below `work/root`; `glibc` is the base image's, if known.

    `origins` maps package file names to the (redacted) URLs the lock names for them.
    """
    reader = Reader(pack_dir)
    got = reader.head(check_host=False)  # the image's platform, not this machine's
    assert got.manifest is not None and got.platform is not None  # our own pack: both present
    if glibc is not None:
        check_virtual_packages(got.manifest.virtual_packages, {"__glibc": glibc})
    manifest, platform = got.manifest, got.platform
    got = reader.rest(work / "verified", reporter)
    chosen = records(got, work / "verified")
    python = python_info(chosen) if got.wheels else None
    if python is not None:
        check_wheels_compatible([Path(m).name for m in got.wheels], python, platform, glibc)
    owners = check_entries(
        (path.rsplit("/", 1)[-1], package_entries(file))
        for path, (file, _) in sorted(got.packages.items())
        if file is not None
    )
    root = work / "root"
    relative = dest.relative_to("/")
    prefix = root / relative
    final = Path(dest)
    reporter.info(f"installing {len(chosen)} packages at {dest} for the image")
    link(chosen, prefix, final, work / "pkgs", platform, False, reporter)
    _settle_records(prefix, origins)
    parts = [_conda_part(meta, relative, root) for meta in sorted(prefix.glob("conda-meta/*.json"))]
    for member, path in sorted(got.wheels.items()):
        assert path is not None and python is not None
        before = set(_files(prefix))
        install_wheels(prefix, final, {member: path}, python, reporter)
        added = sorted(set(_files(prefix)) - before)
        parts.append(
            _part(Path(member).name.split("-")[0], [str(relative / f) for f in added], root)
        )
    check_symlinks(prefix, final, owners)
    check_env_vars(prefix)
    write_history(prefix)
    rest = _extras(root, prefix, dest, platform, got.sbom)
    claimed = {f for p in parts for f in p.files}
    rest += [str(relative / f) for f in _files(prefix) if str(relative / f) not in claimed]
    env, sources = activated_env(prefix, platform)
    # rattler names the staged prefix; the image's processes see it at its final path.
    final_env = {k: v.replace(str(prefix), str(dest)) for k, v in env.items()}
    return Staged(root, platform, manifest, tuple(parts), tuple(sorted(rest)), final_env, sources)


def _settle_records(prefix: Path, origins: Mapping[str, str]) -> None:
    """The records name where each package came from, not this build's temp dirs: the image
    should not leak them, and its digest must not depend on them."""
    for meta in sorted(prefix.glob("conda-meta/*.json")):
        record = rattler.PrefixRecord.from_path(meta)
        url = origins.get(record.file_name)
        if url is not None:
            record.url = url
            record.channel = url.rsplit("/", 2)[0] + "/"
        record.extracted_package_dir = None
        record.package_tarball_full_path = None
        settled = rattler.PrefixRecord(
            record,
            record.paths_data,
            link=None,
            files=list[os.PathLike[str]](record.files),
            requested_specs=record.requested_specs,
        )
        settled.write_to_path(meta, pretty=True)


def _conda_part(meta: Path, relative: PurePosixPath, root: Path) -> Part:
    doc = json.loads(meta.read_bytes())
    files = [str(relative / f) for f in doc.get("files") or []]
    return _part(str(doc.get("name") or meta.stem), files, root)


def _part(name: str, files: list[str], root: Path) -> Part:
    present = [f for f in files if (root / f).is_symlink() or (root / f).exists()]
    size = sum((root / f).lstat().st_size for f in present)
    return Part(name, tuple(sorted(present)), size)


def _files(prefix: Path) -> list[str]:
    """Every non-directory below prefix (symlinks to directories too), relative, sorted."""
    found: list[str] = []
    for top, dirs, names in os.walk(prefix):
        base = Path(top)
        for name in names + [d for d in dirs if (base / d).is_symlink()]:
            found.append((base / name).relative_to(prefix).as_posix())
    return sorted(found)


def _extras(
    root: Path, prefix: Path, dest: PurePosixPath, platform: str, sbom: bytes | None
) -> list[str]:
    """activate.sh and deactivate.sh beside the env, and the SBOM beside them, as envunpack
    writes them (not in conda-meta/, which rattler reads as package records only)."""
    beside = prefix.parent
    written: list[Path] = []
    for name, content in activation_scripts(prefix, "bash", platform).items():
        # rattler reads activate.d from the staged prefix; the script must name the final one.
        text = f"# written by envpack --oci-image for {dest}\n" + content.replace(
            str(prefix), str(dest)
        )
        (beside / name).write_text(text)
        (beside / name).chmod(0o755)
        written.append(beside / name)
    if sbom is not None:
        (beside / SBOM_NAME).write_bytes(sbom)
        written.append(beside / SBOM_NAME)
    return [p.relative_to(root).as_posix() for p in written]

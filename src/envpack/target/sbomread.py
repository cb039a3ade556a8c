"""The archive's SBOM on the target: verified against the manifest, printed, or copied.

No SBOM library here: an envpack archive's `sbom.cdx.json` is bytes the manifest vouches
for, so checking its size and sha256 is all the unpacker does. Only a pixi-pack archive, which
has no SBOM, needs one generated; that loads the packer's `envpack.packer.sbom` (and cyclonedx)
lazily, which the frozen envunpack leaves out.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from envpack.core.archive import Member
from envpack.core.errors import ArchiveError, EnvpackError
from envpack.core.folder import members_of
from envpack.core.hashing import hash_stream
from envpack.core.layout import (
    CHANNEL_DIR,
    CHUNK,
    MANIFEST_NAME,
    PIXI_PACK_NAME,
    PYPI_DIR,
    SBOM_NAME,
    is_artifact_path,
    is_repodata_path,
)
from envpack.core.manifest import manifest_from_json, pixi_pack_platform
from envpack.core.models import Artifact, Listed

# An SBOM of tens of thousands of packages is a few tens of MB; more is an attack on memory.
_LIMIT = 64 << 20


@dataclass(frozen=True)
class Sbom:
    data: bytes
    # True when the archive had none (pixi-pack) and this one was made from its repodata.
    generated: bool = False


def verify(member: Member, listed: Listed) -> bytes:
    """The SBOM's bytes, or ArchiveError if they are not what the manifest lists."""
    # Checked from the header, before reading: a lying member cannot inflate past this.
    if member.size != listed.size or member.size > _LIMIT:
        raise ArchiveError(
            f"{SBOM_NAME}: {member.size} bytes in the archive, manifest says {listed.size}"
        )
    data = member.stream.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != listed.sha256:
        raise ArchiveError(
            f"{SBOM_NAME}: sha256 {digest} does not match the manifest's {listed.sha256}; "
            "the archive is corrupt or was tampered with"
        )
    return data


def read_sbom(source: BinaryIO | Path) -> Sbom:
    """The verified SBOM of an envpack archive, or one made from a pixi-pack archive's repodata."""
    listed: Listed | None = None
    platform: str | None = None
    repodata: dict[str, bytes] = {}
    hashed: dict[str, tuple[str, int]] = {}  # member → (sha256, size)
    for member in members_of(source):
        if member.name == MANIFEST_NAME:
            manifest = manifest_from_json(_read(member))
            if manifest.sbom is None:
                raise EnvpackError(
                    f"this archive has no SBOM (format {manifest.format_version}, made by "
                    f"envpack {manifest.envpack_version}); repack it with a newer envpack"
                )
            listed = manifest.sbom
        elif member.name == SBOM_NAME and listed is not None:
            return Sbom(verify(member, listed))
        elif member.name == PIXI_PACK_NAME:
            platform = pixi_pack_platform(_read(member))
        elif listed is None and is_repodata_path(member.name):
            # All repodata is held in memory: capped together, not only each file.
            if sum(map(len, repodata.values())) + member.size > _LIMIT:
                raise ArchiveError("the archive's repodata.json files are implausibly large")
            repodata[member.name] = _read(member)
        elif listed is None and is_artifact_path(member.name):
            hashed[member.name] = _hash(member)
        else:
            _drain(member)
    if listed is not None:
        raise ArchiveError(f"archive is missing {SBOM_NAME}, which its manifest lists")
    if platform is None:
        raise ArchiveError("not an envpack or pixi-pack archive (no envpack.json/pixi-pack.json)")
    return Sbom(_generate(platform, repodata, hashed), generated=True)


def is_our_sbom(path: Path) -> bool:
    """True for a CycloneDX file whose tools name envpack: a copy envunpack wrote before."""
    try:
        if path.is_symlink() or path.stat().st_size > _LIMIT:
            return False
        doc = json.loads(path.read_bytes())
        tools = doc["metadata"]["tools"]
        components = tools.get("components", []) if isinstance(tools, dict) else tools
        return any(isinstance(c, dict) and c.get("name") == "envpack" for c in components)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def write_copy(out_dir: Path, data: bytes | None) -> Path | None:
    """Put the SBOM beside activate.sh, or remove a stale one when the archive has none.

    Not in the env's conda-meta/: conda, pixi and rattler read every conda-meta/*.json as a
    package record, and rattler refuses the whole prefix over one that is not.
    """
    path = out_dir / SBOM_NAME
    if data is None:
        # An SBOM of the env this one replaced would describe software that is not there.
        path.unlink(missing_ok=True)
        return None
    tmp = path.with_name(f".{SBOM_NAME}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)
    return path


# --- pixi-pack archives ------------------------------------------------------------------------


def _generate(
    platform: str, repodata: dict[str, bytes], hashed: dict[str, tuple[str, int]]
) -> bytes:
    try:
        # Lazily, and only here: cyclonedx is a packer dependency the frozen build leaves out.
        from envpack.packer.sbom import Item, Subject, sbom_json  # noqa: TID251
    except ImportError:
        raise EnvpackError(
            "this is a pixi-pack archive, which has no SBOM, and making one needs "
            "cyclonedx-python-lib, which this frozen envunpack leaves out; run the "
            "pip-installed envunpack (pip install envpack) instead"
        ) from None
    records = _records(repodata)
    items = []
    for path, (digest, size) in sorted(hashed.items()):
        artifact, record = _artifact(path, digest, size, records)
        items.append(Item(artifact, record=record))
    subject = Subject("pixi-pack", platform, None, source="pixi-pack repodata (no SBOM shipped)")
    return sbom_json(items, subject)


def _records(repodata: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for name, data in repodata.items():
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ArchiveError(f"{name} is not valid JSON") from None
        subdir = name.split("/")[1]
        for key in ("packages", "packages.conda"):
            table = doc.get(key) if isinstance(doc, dict) else None
            for filename, record in (table or {}).items() if isinstance(table, dict) else ():
                if isinstance(record, dict):
                    records[f"{CHANNEL_DIR}/{subdir}/{filename}"] = record
    return records


def _artifact(
    path: str, digest: str, size: int, records: dict[str, dict[str, Any]]
) -> tuple[Artifact, dict[str, Any]]:
    """The artifact behind a member, hashed as read, and its repodata record (none: wheels)."""
    parts = path.split("/")
    if parts[0] == PYPI_DIR:
        from packaging.utils import InvalidWheelFilename, parse_wheel_filename

        try:
            name, version, _, _ = parse_wheel_filename(parts[1])
        except InvalidWheelFilename:
            raise ArchiveError(f"{path} is not a valid wheel file name") from None
        return Artifact("wheel", str(name), str(version), parts[1], digest, None, size), {}
    record = records.get(path)
    if record is None:
        raise ArchiveError(f"{path} has no record in the archive's repodata.json")
    # pixi-pack archives have no manifest: the repodata's sha256 is the only guard.
    if record.get("sha256") not in (None, digest):
        raise ArchiveError(f"{path}: sha256 does not match its repodata record")
    md5 = record.get("md5")
    conda = Artifact(
        kind="conda",
        name=str(record.get("name", "")),
        version=str(record.get("version", "")),
        filename=parts[2],
        sha256=digest,
        md5=md5 if isinstance(md5, str) else None,
        size=size,
        build=str(record.get("build", "")),
        subdir=parts[1],
    )
    return conda, record


# --- small helpers -----------------------------------------------------------------------------


def _read(member: Member) -> bytes:
    if member.size > _LIMIT:
        raise ArchiveError(f"{member.name} is implausibly large ({member.size} bytes)")
    return member.stream.read()


def _hash(member: Member) -> tuple[str, int]:
    return hash_stream(member.stream).sha256, member.size


def _drain(member: Member) -> None:
    while member.stream.read(CHUNK):
        pass

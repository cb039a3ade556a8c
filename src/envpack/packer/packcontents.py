"""What a pack holds, apart from the package files: manifest, SBOM, repodata, environment.yml.

Written in one order by `write_members`, to a tar (archive.ArchiveWriter) or a folder
(packdir.DirectoryWriter): the manifest first, so a reader can refuse before writing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from envpack import __version__
from envpack.core.layout import (
    CHANNEL_DIR,
    ENVIRONMENT_YML,
    MANIFEST_NAME,
    PIXI_PACK_NAME,
    SBOM_NAME,
)
from envpack.core.manifest import FORMAT_VERSION, manifest_to_json, pixi_pack_json
from envpack.core.models import Artifact, Listed, Manifest, Plan
from envpack.core.progress import Bar
from envpack.packer.fetch import Fetched
from envpack.packer.sbomitems import Subject


class MemberWriter(Protocol):
    def add_bytes(self, name: str, data: bytes) -> None: ...
    def add_file(self, name: str, path: Path) -> None: ...


def shipped(fetched: list[Fetched]) -> tuple[Artifact, ...]:
    return tuple(
        replace(f.artifact, sha256=f.sha256, size=f.size)
        for f in sorted(fetched, key=lambda f: f.artifact.path)
    )


def subject(plan: Plan) -> Subject:
    return Subject(plan.environment, plan.platform, plan.lock_sha256)


def manifest_for(plan: Plan, artifacts: tuple[Artifact, ...], sbom: bytes) -> Manifest:
    listed = Listed(SBOM_NAME, hashlib.sha256(sbom).hexdigest(), len(sbom))
    return Manifest(
        format_version=FORMAT_VERSION,
        envpack_version=__version__,
        platform=plan.platform,
        environment=plan.environment,
        lock_sha256=plan.lock_sha256,
        virtual_packages=plan.virtual_packages,
        artifacts=artifacts,
        sbom=listed,
    )


def repodata(plan: Plan, fetched: list[Fetched]) -> dict[str, bytes]:
    """`channel/<subdir>/repodata.json` from the lock's records, so repodata patches survive."""
    by_path = {f.artifact.path: f for f in fetched}
    subdirs: dict[str, dict[str, dict[str, object]]] = {"noarch": {}, plan.platform: {}}
    for download in plan.downloads:
        if download.artifact.kind != "conda":
            continue
        got = by_path[download.artifact.path]
        record = dict(download.record)
        record.update(sha256=got.sha256, size=got.size)
        if download.artifact.md5:
            record["md5"] = download.artifact.md5
        subdirs[download.artifact.subdir][download.artifact.filename] = record
    out: dict[str, bytes] = {}
    for subdir, records in subdirs.items():
        doc = {
            "info": {"subdir": subdir},
            "packages": {k: v for k, v in records.items() if k.endswith(".tar.bz2")},
            "packages.conda": {k: v for k, v in records.items() if k.endswith(".conda")},
            "removed": [],
            "repodata_version": 1,
        }
        out[f"{CHANNEL_DIR}/{subdir}/repodata.json"] = json.dumps(doc, sort_keys=True).encode()
    return out


def environment_yml(plan: Plan) -> bytes:
    """Lets conda or micromamba install the unpacked archive without envpack."""
    lines = ["channels:", "  - ./channel", "  - nodefaults", "dependencies:"]
    wheels = []
    for d in plan.downloads:
        a = d.artifact
        if a.kind == "conda":
            lines.append(f"  - {a.name}={a.version}={a.build}")
        else:
            wheels.append(f"      - ./{a.path}")
    if wheels:
        lines += ["  - pip:", *wheels]
    return ("\n".join(lines) + "\n").encode()


def write_members(
    writer: MemberWriter,
    plan: Plan,
    fetched: list[Fetched],
    manifest: Manifest,
    sbom: bytes,
    bar: Bar,
) -> None:
    # The manifest first, so a reader can refuse the archive before writing anything.
    writer.add_bytes(MANIFEST_NAME, manifest_to_json(manifest))
    writer.add_bytes(PIXI_PACK_NAME, pixi_pack_json(plan.platform))
    writer.add_bytes(ENVIRONMENT_YML, environment_yml(plan))
    # Before the packages, so `envunpack --list --sbom` stops reading early.
    writer.add_bytes(SBOM_NAME, sbom)
    for name, data in sorted(repodata(plan, fetched).items()):
        writer.add_bytes(name, data)
    for item in sorted(fetched, key=lambda f: f.artifact.path):
        writer.add_file(item.artifact.path, item.path)
        bar.update(item.size)

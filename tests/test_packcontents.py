"""packcontents: the manifest, SBOM, repodata and environment.yml of a real plan, in order."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from devtools.fixtures.channel import FixtureChannel
from envpack.core.manifest import manifest_from_json
from envpack.core.models import Plan
from envpack.packer.fetch import Fetched
from envpack.packer.lockfile import plan_lock
from envpack.packer.packcontents import (
    environment_yml,
    manifest_for,
    repodata,
    shipped,
    write_members,
)
from envpack.packer.packdir import DirectoryWriter


class _Recording(DirectoryWriter):
    """The folder writer, remembering the order members arrive in."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.order: list[str] = []

    def add_bytes(self, name: str, data: bytes) -> None:
        self.order.append(name)
        super().add_bytes(name, data)

    def add_file(self, name: str, path: Path) -> None:
        self.order.append(name)
        super().add_file(name, path)


def _fetched(plan: Plan, channel: FixtureChannel) -> list[Fetched]:
    """What fetch would deliver: the channel's own files, measured here."""
    out = []
    for d in reversed(plan.downloads):  # any order in, one order out
        path = channel.root / d.artifact.subdir / d.artifact.filename
        data = path.read_bytes()
        out.append(Fetched(d.artifact, path, hashlib.sha256(data).hexdigest(), len(data)))
    return out


def test_members_of_a_real_plan(
    fixture_channel: FixtureChannel, fixture_project: Path, tmp_path: Path
) -> None:
    plan, _ = plan_lock(fixture_project / "pixi.lock", "default", "linux-64")
    conda = [d for d in plan.downloads if d.artifact.kind == "conda"]
    assert conda
    fetched = _fetched(plan, fixture_channel)
    artifacts = shipped(fetched)
    assert [a.path for a in artifacts] == sorted(a.path for a in artifacts)
    assert all(a.sha256 and a.size for a in artifacts)
    sbom = b'{"bomFormat": "CycloneDX"}'
    manifest = manifest_for(plan, artifacts, sbom)
    assert manifest.sbom is not None
    assert manifest.sbom.sha256 == hashlib.sha256(sbom).hexdigest()
    assert manifest.lock_sha256 == plan.lock_sha256

    writer = _Recording(tmp_path / "pack")
    written = 0

    class Bar:
        def update(self, n: int) -> None:
            nonlocal written
            written += n

        def close(self) -> None:
            pass

    write_members(writer, plan, fetched, manifest, sbom, Bar())
    root = tmp_path / "pack"
    assert writer.order[:4] == [
        "envpack.json",
        "pixi-pack.json",
        "environment.yml",
        "sbom.cdx.json",
    ]
    assert writer.order[4:6] == ["channel/linux-64/repodata.json", "channel/noarch/repodata.json"]
    assert writer.order[6:] == [a.path for a in artifacts]
    assert written == sum(f.size for f in fetched)
    assert manifest_from_json((root / "envpack.json").read_bytes()) == manifest
    assert json.loads((root / "pixi-pack.json").read_text())["platform"] == "linux-64"
    for f in fetched:
        assert (root / f.artifact.path).read_bytes() == f.path.read_bytes()

    # repodata: the lock's records, with the measured hashes, under the right key.
    docs = {name: json.loads(data) for name, data in repodata(plan, fetched).items()}
    for d in conda:
        doc = docs[f"channel/{d.artifact.subdir}/repodata.json"]
        key = "packages.conda" if d.artifact.filename.endswith(".conda") else "packages"
        record = doc[key][d.artifact.filename]
        assert record["name"] == d.artifact.name
        assert record["sha256"] == d.artifact.sha256
        assert record["depends"] == list(d.record.get("depends", []))  # type: ignore[call-overload]
    assert sum(len(doc["packages"]) + len(doc["packages.conda"]) for doc in docs.values()) == len(
        conda
    )

    yml = environment_yml(plan).decode().splitlines()
    assert yml[:4] == ["channels:", "  - ./channel", "  - nodefaults", "dependencies:"]
    assert sorted(yml[4:]) == sorted(
        f"  - {d.artifact.name}={d.artifact.version}={d.artifact.build}" for d in conda
    )

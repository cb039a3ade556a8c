"""Golden sha256 of the archive writer's bytes, for both compressions.

Same inputs must give the same archive on every machine and every release: a change of
these digests means archives are no longer reproducible across envpack versions (or the
zstd library changed its output) and must be a deliberate, noted decision.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from envpack.core.models import Artifact
from envpack.packer.archivewrite import ArchiveWriter, Compression
from envpack.packer.sbom import Item, Subject, sbom_json

GOLDEN = {
    "zstd": "b1091adefcd7ef71487e3719ca32d2bdf56325802ddd461da67107f8371e2800",
    "none": "c8728f601a719a5ce8c0bc67755e502e3675e69f76e0b7cb5e89ac854c88feaf",
}
# The SBOM is archive bytes too: a cyclonedx-python-lib release that orders or formats its
# JSON differently would change every archive, and must be noticed here first.
GOLDEN_SBOM = "693a50b428b22b0b6073b1059bd0d03967c773712bea64f0c6455c6cae723998"


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_archive_bytes_match_the_golden_digest(compression: Compression) -> None:
    out = io.BytesIO()
    with ArchiveWriter(out, compression, 3) as writer:
        writer.add_bytes("envpack.json", b'{"format_version": 2}\n')
        writer.add_bytes("sbom.cdx.json", b'{"bomFormat": "CycloneDX", "specVersion": "1.6"}\n')
        writer.add_bytes("channel/noarch/repodata.json", b'{"packages": {}}' * 100)
        writer.add_bytes("channel/noarch/x-1-0.conda", bytes(range(256)) * 4096)
    assert hashlib.sha256(out.getvalue()).hexdigest() == GOLDEN[compression]


# Big members that do not compress go in frames of their own at archive.FAST_LEVEL: that
# frame layout is archive bytes too.
GOLDEN_FRAMES = "2a40f5c9d909b47956964c04da53f62c9d39e3c26e1f54a98e53ee867152fd24"


def test_archive_frames_match_the_golden_digest() -> None:
    packed = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(10_000))
    out = io.BytesIO()
    with ArchiveWriter(out, "zstd", 3) as writer:
        writer.add_bytes("envpack.json", b'{"format_version": 2}\n')
        writer.add_bytes("channel/noarch/a-1-0.conda", packed)
        writer.add_bytes("channel/noarch/b-1-0.conda", bytes(range(256)) * 4096)
    assert hashlib.sha256(out.getvalue()).hexdigest() == GOLDEN_FRAMES


def test_sbom_bytes_match_the_golden_digest() -> None:
    python = Artifact(
        "conda",
        "python",
        "3.11.2",
        "python-3.11.2-h0_0.conda",
        "ab" * 32,
        "cd" * 16,
        10,
        "h0_0",
        "linux-64",
    )
    zlib = Artifact(
        "conda",
        "libzlib",
        "1.2.13",
        "libzlib-1.2.13-h1_0.tar.bz2",
        "ef" * 32,
        None,
        5,
        "h1_0",
        "linux-64",
    )
    six = Artifact("wheel", "six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", "01" * 32)
    items = [
        Item(
            python,
            {"depends": ["libzlib >=1.2", "__glibc >=2.17"], "license": "PSF-2.0"},
            "https://conda.example/ch/linux-64/python-3.11.2-h0_0.conda",
        ),
        Item(zlib, {"license": "Zlib"}, None, injected=True),
        Item(six),
    ]
    subject = Subject("default", "linux-64", "23" * 32)
    data = sbom_json(items, subject, tool_version="0.0.0")
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SBOM


# The whole output of `envpack` for fixed inputs, as pixi-pack snapshots whole packs: the
# manifest, pixi-pack.json, environment.yml, the SBOM, repodata and the artifacts.
GOLDEN_PACK = {
    "zstd": "aa48362bd4190602a796af8505a801ece0ff425f3e0c3fc39e45e8ad350274b8",
    "none": "8f8e20ff1a8d5344e1ae75d0c2b10012df52a5588d6e73f4fd75508a931b6ce3",
}


def _whole_pack(tmp_path: Path, compression: Compression) -> bytes:
    from envpack.core.models import Download, Plan
    from envpack.core.progress import SilentReporter
    from envpack.packer.fetch import Fetched
    from envpack.packer.packcontents import manifest_for, shipped, subject, write_members
    from envpack.packer.sbom import plan_items, sbom_json

    conda = [
        ("python", "3.11.2", "h0_0", "linux-64", ".conda", bytes(range(256)) * 64, []),
        ("six", "1.16.0", "pyh_0", "noarch", ".tar.bz2", b"six" * 1000, ["python >=3.11"]),
    ]
    downloads, fetched = [], []
    for name, version, build, subdir, ext, data, depends in conda:
        filename = f"{name}-{version}-{build}{ext}"
        path = tmp_path / filename
        path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        artifact = Artifact(
            "conda", name, version, filename, sha, "00" * 16, len(data), build, subdir
        )
        record: dict[str, object] = {
            "name": name,
            "version": version,
            "build": build,
            "build_number": 0,
            "depends": depends,
            "subdir": subdir,
            "license": "MIT",
        }
        url = f"https://conda.example.invalid/channel/{subdir}/{filename}"
        downloads.append(Download(artifact, url, record))
        fetched.append(Fetched(artifact, path, sha, len(data)))
    wheel = tmp_path / "tabulate-0.9.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel" * 700)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    artifact = Artifact("wheel", "tabulate", "0.9.0", wheel.name, sha, None, 3500)
    downloads.append(Download(artifact, f"https://pypi.example.invalid/{wheel.name}"))
    fetched.append(Fetched(artifact, wheel, sha, 3500))
    plan = Plan("default", "linux-64", "ab" * 32, ("__glibc >=2.17",), tuple(downloads))
    artifacts = shipped(fetched)
    sbom = sbom_json(plan_items(plan, artifacts), subject(plan), tool_version="0.0.0")
    manifest = manifest_for(plan, artifacts, sbom)
    out = io.BytesIO()
    with ArchiveWriter(out, compression, 3) as writer:
        write_members(writer, plan, fetched, manifest, sbom, SilentReporter().bar("w", None))
    return out.getvalue()


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_whole_pack_matches_the_golden_digest(
    compression: Compression, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tool version is in the manifest; a release must not count as a format change.
    monkeypatch.setattr("envpack.packer.packcontents.__version__", "0.0.0")
    data = _whole_pack(tmp_path, compression)
    assert hashlib.sha256(data).hexdigest() == GOLDEN_PACK[compression]

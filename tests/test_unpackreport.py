"""envpack.target.unpackreport called directly on the session's packed archives: --list as text
and JSON, --check, and --list --sbom, for an envpack archive and a pixi-pack style one."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from envpack.core.archive import iter_members
from envpack.core.layout import MANIFEST_NAME, SBOM_NAME
from envpack.core.manifest import artifact_to_json
from envpack.core.models import Manifest
from envpack.core.progress import SilentReporter
from envpack.target.receive import read_manifest
from envpack.target.unpack import check, describe
from envpack.target.unpackreport import print_check, print_listing, print_sbom

COMMON = {"command", "platform", "environment", "artifacts", "total_size"}
LIST_ADDS = {"format", "format_version", "envpack_version", "virtual_packages", "sbom", "verified"}


def _manifest(archive: Path) -> Manifest:
    with archive.open("rb") as fh:
        manifest = read_manifest(fh)
    assert isinstance(manifest, Manifest)
    return manifest


def _member(archive: Path, name: str) -> bytes:
    with archive.open("rb") as fh:
        return next(m.stream.read() for m in iter_members(fh) if m.name == name)


@pytest.fixture(scope="module")
def pixi_pack_archive(archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plain archive laid out as pixi-pack writes it: no envpack.json, no SBOM."""
    dst = io.BytesIO()
    with tarfile.open(archives["none"]) as tin, tarfile.open(fileobj=dst, mode="w") as tout:
        for member in tin.getmembers():
            if member.name not in (MANIFEST_NAME, SBOM_NAME):
                tout.addfile(member, tin.extractfile(member))
    archive = tmp_path_factory.mktemp("pixi-pack") / "pixi-pack.tar"
    archive.write_bytes(dst.getvalue())
    return archive


def test_listing_as_json(archives: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest(archives["zstd"])
    with archives["zstd"].open("rb") as fh:
        print_listing(describe(read_manifest(fh)), as_json=True)
    out, err = capsys.readouterr()
    doc: dict[str, Any] = json.loads(out)
    assert set(doc) == COMMON | LIST_ADDS
    assert (doc["command"], doc["format"], doc["verified"]) == ("list", "envpack", False)
    assert (doc["platform"], doc["environment"]) == (manifest.platform, manifest.environment)
    assert doc["format_version"] == manifest.format_version
    assert doc["artifacts"] == [artifact_to_json(a) for a in manifest.artifacts]
    assert doc["total_size"] == sum(a.size or 0 for a in manifest.artifacts)
    assert doc["virtual_packages"] == list(manifest.virtual_packages)
    # The SBOM entry names the member that is really there, by its real hash.
    sbom = _member(archives["zstd"], SBOM_NAME)
    assert doc["sbom"] == {"path": SBOM_NAME, "sha256": hashlib.sha256(sbom).hexdigest()}
    assert err == ""  # the document says verified: false; no line besides it


def test_listing_as_text(archives: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest(archives["aarch64"])  # --list reads any platform's archive
    print_listing(describe(manifest), as_json=False)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == (
        f"envpack archive for {manifest.platform}, environment {manifest.environment}"
    )
    rows = lines[1:-1]
    assert [r.split() for r in rows] == [
        [a.path, f"{(a.size or 0) / 1e6:.2f}", "MB"] for a in manifest.artifacts
    ]
    assert all(r.startswith("  ") for r in rows)
    total = sum(a.size or 0 for a in manifest.artifacts)
    glibc = [v for v in manifest.virtual_packages if v.startswith("__glibc")]
    assert glibc  # the fixture's packages need one
    assert lines[-1] == (
        f"{len(manifest.artifacts)} artifacts, {total / 1e6:.2f} MB; needs {', '.join(glibc)}; "
        f"SBOM {SBOM_NAME} (see --list --sbom)"
    )
    assert err == "not verified: run `envunpack --check` to check every hash\n"


def test_listing_a_pixi_pack_archive(
    pixi_pack_archive: Path, archives: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(archives["none"])
    with pixi_pack_archive.open("rb") as fh:
        print_listing(describe(read_manifest(fh)), as_json=True)
    doc = json.loads(capsys.readouterr().out)
    assert (doc["format"], doc["environment"], doc["virtual_packages"]) == ("pixi-pack", None, [])
    # Without a manifest only paths and sizes are known, read from the members themselves.
    expected = sorted((a.path, a.size) for a in manifest.artifacts)
    assert sorted((a["path"], a["size"]) for a in doc["artifacts"]) == expected
    with pixi_pack_archive.open("rb") as fh:
        print_listing(describe(read_manifest(fh)), as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"pixi-pack archive for {manifest.platform}"
    assert "SBOM" not in lines[-1]
    assert lines[-1].startswith(f"{len(manifest.artifacts)} artifacts, ")


def test_check_as_json_text_and_quiet(
    archives: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(archives["zstd"])
    with archives["zstd"].open("rb") as fh:
        checked = check(fh, SilentReporter())
    kinds = [a.kind for a in manifest.artifacts]
    assert (checked.packages, checked.wheels) == (kinds.count("conda"), kinds.count("wheel"))
    print_check(checked, as_json=True, quiet=False)
    out, err = capsys.readouterr()
    doc: dict[str, Any] = json.loads(out)
    assert set(doc) == COMMON | {"verified", "packages", "wheels"}
    assert (doc["command"], doc["verified"]) == ("check", True)
    assert (doc["packages"], doc["wheels"]) == (checked.packages, checked.wheels)
    assert doc["artifacts"] == [artifact_to_json(a) for a in manifest.artifacts]
    assert err == ""
    print_check(checked, as_json=False, quiet=False)
    assert capsys.readouterr() == (
        "",
        f"ok: {checked.packages} packages and {checked.wheels} wheels verified for "
        f"{manifest.platform}; this machine can unpack it\n",
    )
    print_check(checked, as_json=False, quiet=True)
    assert capsys.readouterr() == ("", "")


def test_sbom_is_the_verified_member_byte_for_byte(
    archives: dict[str, Path], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    manifest = _manifest(archives["zstd"])
    with archives["zstd"].open("rb") as fh:
        print_sbom(fh)
    out, err = capsysbinary.readouterr()
    assert out == _member(archives["zstd"], SBOM_NAME)
    assert manifest.sbom is not None
    assert hashlib.sha256(out).hexdigest() == manifest.sbom.sha256
    assert err == b""


def test_sbom_of_a_pixi_pack_archive_is_generated_and_said_so(
    pixi_pack_archive: Path, archives: dict[str, Path], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    with pixi_pack_archive.open("rb") as fh:
        print_sbom(fh)
    out, err = capsysbinary.readouterr()
    assert err.decode().startswith("note: this pixi-pack archive has no SBOM")
    sbom = json.loads(out)
    assert sbom["bomFormat"] == "CycloneDX"
    names = {c["name"] for c in sbom["components"]}
    conda = {a.name for a in _manifest(archives["none"]).artifacts if a.kind == "conda"}
    assert conda <= names

"""The SBOM on the target: verified like any member, printed by `--list --sbom`, copied beside
activate.sh, generated for pixi-pack archives; old (format 1) archives still unpack."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rattler
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.httpserver import serve_directory
from tests.adversarial import craft
from tests.adversarial.craft import Entry
from tests.clirun import assert_one_error_line, run_cli

SBOM = "sbom.cdx.json"
# Three small packages without python: quick to link.
SMALL = (
    "channel/linux-64/libhello-1.0.0-h9087c05_0.tar.bz2",
    "channel/linux-64/hello-c-1.0.0-hccbdfe7_0.conda",
    "channel/noarch/fixture-activation-1.0.0-h4616a5c_0.conda",
)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel) -> Path:
    base = tmp_path_factory.mktemp("sbomread")
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_v6, url, base / "project").parent
        out = base / "env.tar"
        result = run_cli("envpack", project, "-o", out, "--cache", base / "cache", "-q")
    assert result.returncode == 0, result.stderr.decode()
    return out


def small(archive: Path) -> list[Entry]:
    if str(rattler.Subdir.current()) != "linux-64":
        pytest.skip("the small set names linux-64 packages")
    return craft.keep_artifacts(craft.read_entries(archive), SMALL)


def write(entries: list[Entry], dest: Path) -> Path:
    return craft.write_archive(dest, entries)


def unpack(archive: Path, out: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_cli("envunpack", archive, "-o", out, "-q", *args)


def listed_sha256(entries: list[Entry]) -> str:
    value = json.loads(craft.find(entries, craft.MANIFEST).data)["sbom"]["sha256"]
    assert isinstance(value, str)
    return value


def as_format_1(entries: list[Entry]) -> list[Entry]:
    """The same archive as envpack wrote it before SBOMs existed."""
    out = [e for e in entries if e.name != SBOM]

    def edit(doc: dict[str, object]) -> None:
        doc["format_version"] = 1
        del doc["sbom"]

    craft.edit_json(out, craft.MANIFEST, edit)
    return out


def as_pixi_pack(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if e.name not in (craft.MANIFEST, SBOM)]


# --- printed and copied ------------------------------------------------------------------------


def test_list_sbom_prints_the_verified_bytes(archive: Path, tmp_path: Path) -> None:
    result = run_cli("envunpack", "--list", "--sbom", archive, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    entries = craft.read_entries(archive)
    assert result.stdout == craft.find(entries, SBOM).data
    assert hashlib.sha256(result.stdout).hexdigest() == listed_sha256(entries)
    assert result.stderr == b""
    assert list(tmp_path.iterdir()) == []


def test_list_names_the_sbom(archive: Path) -> None:
    result = run_cli("envunpack", "--list", archive)
    assert result.returncode == 0, result.stderr.decode()
    assert (
        result.stdout.decode().splitlines()[-1].endswith("; SBOM sbom.cdx.json (see --list --sbom)")
    )


def test_list_json_names_the_sbom(archive: Path) -> None:
    result = run_cli("envunpack", "--list", "--json", archive)
    assert result.returncode == 0, result.stderr.decode()
    doc = json.loads(result.stdout)
    assert doc["format_version"] == 2
    assert doc["sbom"]["path"] == SBOM
    assert doc["sbom"]["sha256"] == listed_sha256(craft.read_entries(archive))


def test_unpacked_env_gets_a_copy_beside_activate(archive: Path, tmp_path: Path) -> None:
    entries = small(archive)
    out = tmp_path / "app"
    result = unpack(write(entries, tmp_path / "small.tar"), out, "--json")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["sbom"] == str(out / SBOM)
    assert (out / SBOM).read_bytes() == craft.find(entries, SBOM).data
    assert (out / "activate.sh").exists()
    assert not list((out / "env" / "conda-meta").glob("*cdx*"))


def test_why_not_in_conda_meta(archive: Path, tmp_path: Path) -> None:
    """rattler (and so pixi) reads every conda-meta/*.json as a package record: one SBOM
    there makes it refuse the whole prefix. This is why the copy sits beside activate.sh."""
    out = tmp_path / "app"
    assert unpack(write(small(archive), tmp_path / "small.tar"), out).returncode == 0
    prefix = out / "env"
    records = [rattler.PrefixRecord.from_path(p) for p in (prefix / "conda-meta").glob("*.json")]
    assert len(records) == len(SMALL)

    def rescan() -> None:
        # installed_packages=None: rattler reads the prefix's conda-meta itself, as pixi does.
        asyncio.run(
            rattler.install(
                [], target_prefix=prefix, cache_dir=tmp_path / "pkgs", show_progress=False
            )
        )

    (prefix / "conda-meta" / SBOM).write_bytes((out / SBOM).read_bytes())
    with pytest.raises(Exception, match="installed packages"):
        rescan()
    (prefix / "conda-meta" / SBOM).unlink()
    rescan()  # and without it, the same prefix reads fine


# --- refused like any corrupt member -----------------------------------------------------------


def _tampered(entries: list[Entry]) -> list[Entry]:
    sbom = craft.find(entries, SBOM)
    data = bytearray(sbom.data)
    data[len(data) // 2] ^= 0x01  # same size: only the hash can tell
    sbom.data = bytes(data)
    return entries


def _size_lie(entries: list[Entry]) -> list[Entry]:
    craft.edit_json(entries, craft.MANIFEST, lambda d: d["sbom"].update(size=1))  # type: ignore[attr-defined]
    return entries


def _missing(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if e.name != SBOM]


def _unlisted(entries: list[Entry]) -> list[Entry]:
    def edit(doc: dict[str, object]) -> None:
        del doc["sbom"]

    craft.edit_json(entries, craft.MANIFEST, edit)
    return entries


def _format_1_with_sbom(entries: list[Entry]) -> list[Entry]:
    # What an envunpack of format 1 would see: an SBOM it was never told about.
    craft.edit_json(entries, craft.MANIFEST, lambda d: d.update(format_version=1))
    return entries


BAD = {
    "tampered": (_tampered, "does not match the manifest"),
    "size-lie": (_size_lie, "manifest says 1"),
    "missing": (_missing, "missing sbom.cdx.json"),
    "unlisted": (_unlisted, "unexpected archive member 'sbom.cdx.json'"),
    "format-1-with-sbom": (_format_1_with_sbom, "unexpected archive member 'sbom.cdx.json'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_sbom_refuses_the_unpack(archive: Path, tmp_path: Path, case: str) -> None:
    edit, needle = BAD[case]
    bad = write(edit(small(archive)), tmp_path / "bad.tar")
    out = tmp_path / "app"
    assert_one_error_line(unpack(bad, out), needle)
    assert not out.exists()


@pytest.mark.parametrize("case", ["tampered", "size-lie", "missing"])
def test_bad_sbom_is_never_printed(archive: Path, tmp_path: Path, case: str) -> None:
    edit, needle = BAD[case]
    bad = write(edit(craft.read_entries(archive)), tmp_path / "bad.tar")
    result = run_cli("envunpack", "--list", "--sbom", bad)
    assert_one_error_line(result, needle)
    assert result.stdout == b""


# --- archives without an SBOM ------------------------------------------------------------------


def test_format_1_archive_still_unpacks_and_drops_a_stale_copy(
    archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "app"
    assert unpack(write(small(archive), tmp_path / "new.tar"), out).returncode == 0
    assert (out / SBOM).exists()
    old = write(as_format_1(small(archive)), tmp_path / "old.tar")
    result = unpack(old, out, "--force")
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "env" / "bin" / "hello-c").exists()
    # The copy described the env that was replaced, not this one.
    assert not (out / SBOM).exists()
    assert_one_error_line(run_cli("envunpack", "--list", "--sbom", old), "no SBOM", "format 1")


def test_pixi_pack_archive_gets_one_made_from_its_repodata(archive: Path, tmp_path: Path) -> None:
    entries = as_pixi_pack(craft.read_entries(archive))
    pixi = write(entries, tmp_path / "pixi.tar")
    result = run_cli("envunpack", "--list", "--sbom", pixi)
    assert result.returncode == 0, result.stderr.decode()
    assert b"no SBOM" in result.stderr and b"repodata" in result.stderr
    assert b"error" not in result.stderr
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(result.stdout.decode())
    assert error is None, str(error)
    doc = json.loads(result.stdout)
    shipped = {e.name: hashlib.sha256(e.data).hexdigest() for e in craft.artifacts(entries)}
    got = {
        next(p["value"] for p in c["properties"] if p["name"] == "envpack:path"): next(
            h["content"] for h in c["hashes"] if h["alg"] == "SHA-256"
        )
        for c in doc["components"]
    }
    assert got == shipped
    assert any(d.get("dependsOn") for d in doc["dependencies"])


@pytest.mark.parametrize("absent", ["cyclonedx", "packageurl", "envpack.packer.sbom"])
def test_pixi_pack_sbom_without_the_library_is_one_error_line(
    archive: Path, tmp_path: Path, absent: str
) -> None:
    """The frozen envunpack leaves these out; blocking their import here does the same."""
    pixi = write(as_pixi_pack(craft.read_entries(archive)), tmp_path / "pixi.tar")
    code = (
        "import sys\n"
        f"sys.modules[{absent!r}] = None  # as absent as in the frozen build\n"
        "from envpack.target.unpack_cli import main\n"
        f"sys.argv = ['envunpack', '--list', '--sbom', {str(pixi)!r}]\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env=dict(os.environ), check=False
    )
    assert_one_error_line(result, "pixi-pack", "pip-installed envunpack")
    assert result.stdout == b""


def test_sbom_needs_list(archive: Path, tmp_path: Path) -> None:
    assert_one_error_line(unpack(archive, tmp_path / "app", "--sbom"), "--sbom", "--list")
    assert not (tmp_path / "app").exists()


def test_pixi_pack_repodata_is_capped_as_a_whole(tmp_path: Path) -> None:
    # Each file under the per-member cap, together over it: refused before more is read.
    big = b'{"packages": {}, "pad": "' + b"a" * (33 << 20) + b'"}'
    entries = [
        craft.member("pixi-pack.json", b'{"version": "1", "platform": "linux-64"}'),
        craft.member("channel/linux-64/repodata.json", big),
        craft.member("channel/noarch/repodata.json", big),
    ]
    pixi = write(entries, tmp_path / "big.tar")
    assert pixi.stat().st_size < (1 << 20)
    result = run_cli("envunpack", "--list", "--sbom", pixi)
    assert_one_error_line(result, "implausibly large")

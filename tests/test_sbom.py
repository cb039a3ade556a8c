"""sbom.cdx.json: schema-valid CycloneDX 1.6, equal to the manifest, reproducible, no secrets.

Checked with cyclonedx-python-lib's own JSON schema validator and packageurl-python's parser,
against archives packed from the fixture channel over real HTTP and, with `--sbom-only`
(which downloads nothing), against the real locks in ../shared when present.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rattler
import zstandard
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

import envpack
from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.httpserver import serve_directory
from envpack.core.models import Artifact
from envpack.packer.sbom import Item, Subject, sbom_json
from tests.clirun import assert_one_error_line, run_cli
from tests.conftest import real_shared_dir

TOKEN = "tk-9f8e7d6c5b4a"
PASSWORD = "s3cr3t-pa55"
SHARED = real_shared_dir()
REAL_LOCKS = sorted((SHARED / "real-locks").glob("*")) if SHARED else []


def members(archive: Path) -> dict[str, bytes]:
    data = archive.read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            assert handle is not None
            out[info.name] = handle.read()
    return out


def validate(data: bytes) -> None:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode())
    assert error is None, str(error)


def pack(project: Path, out: Path, *args: str | Path, env: dict[str, str] | None = None) -> Path:
    cache = out.parent / f"cache-{out.name}"
    result = run_cli("envpack", project, "-o", out, "--cache", cache, "-q", *args, env=env)
    assert result.returncode == 0, result.stderr.decode()
    return out


def lock_records(lock: Path) -> list[rattler.RepoDataRecord]:
    """The lock's conda records for this host's platform, read by rattler, not envpack."""
    env = rattler.LockFile.from_path(lock).environment("default")
    assert env is not None
    platform = next(p for p in env.platforms() if p.name == str(rattler.Subdir.current()))
    return env.conda_repodata_records_for_platform(platform) or []


def properties(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


@pytest.fixture(scope="module")
def packed(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel
) -> Iterator[tuple[Path, Path]]:
    """(project, archive): the fixture env packed once, from a served channel."""
    base = tmp_path_factory.mktemp("sbom")
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_v6, url, base / "project").parent
        yield project, pack(project, base / "env.tar")


# --- the document ------------------------------------------------------------------------------


def test_archive_sbom_is_valid_cyclonedx_1_6(packed: tuple[Path, Path]) -> None:
    got = members(packed[1])
    sbom = got["sbom.cdx.json"]
    validate(sbom)
    doc = json.loads(sbom)
    assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.6")
    (tool,) = doc["metadata"]["tools"]["components"]
    assert (tool["name"], tool["version"]) == ("envpack", envpack.__version__)
    # Reproducible: no moment of packing in it.
    assert "timestamp" not in doc["metadata"]


def test_components_and_hashes_equal_the_manifest(packed: tuple[Path, Path]) -> None:
    got = members(packed[1])
    manifest = json.loads(got["envpack.json"])
    doc = json.loads(got["sbom.cdx.json"])
    by_path = {properties(c)["envpack:path"]: c for c in doc["components"]}
    assert len(doc["components"]) == len(manifest["artifacts"]) == len(by_path)
    for artifact in manifest["artifacts"]:
        component = by_path[artifact["path"]]
        hashes = {h["alg"]: h["content"] for h in component["hashes"]}
        assert hashes["SHA-256"] == artifact["sha256"]
        assert hashes.get("MD5") == artifact.get("md5")
        assert (component["name"], component["version"]) == (artifact["name"], artifact["version"])
    # The manifest vouches for the SBOM like for any member.
    listed = manifest["sbom"]
    assert listed["path"] == "sbom.cdx.json"
    assert listed["sha256"] == hashlib.sha256(got["sbom.cdx.json"]).hexdigest()
    assert listed["size"] == len(got["sbom.cdx.json"])
    assert manifest["format_version"] == 2


def test_every_purl_parses_back(packed: tuple[Path, Path]) -> None:
    got = members(packed[1])
    manifest = {a["path"]: a for a in json.loads(got["envpack.json"])["artifacts"]}
    for component in json.loads(got["sbom.cdx.json"])["components"]:
        purl = PackageURL.from_string(component["purl"])
        artifact = manifest[properties(component)["envpack:path"]]
        assert purl.type == "conda"
        assert (purl.name, purl.version) == (artifact["name"], artifact["version"])
        assert isinstance(purl.qualifiers, dict)
        assert purl.qualifiers["build"] == artifact["build"]
        assert purl.qualifiers["subdir"] == artifact["path"].split("/")[1]
        assert purl.qualifiers["channel"].startswith("http://127.0.0.1:")
        (ref,) = component["externalReferences"]
        assert ref["type"] == "distribution"
        assert ref["url"] == f"{purl.qualifiers['channel']}/{artifact['path'].split('/', 1)[1]}"


def test_dependency_graph_follows_the_lock_records(packed: tuple[Path, Path]) -> None:
    project, archive = packed
    doc = json.loads(members(archive)["sbom.cdx.json"])
    name_of = {c["bom-ref"]: c["name"] for c in doc["components"]}
    edges = {
        name_of[d["ref"]]: {name_of[r] for r in d.get("dependsOn", [])}
        for d in doc["dependencies"]
        if d["ref"] in name_of
    }
    records = lock_records(project / "pixi.lock")
    assert len(records) == len(edges)
    for record in records:
        wanted = {
            name.normalized
            for dep in record.depends
            if not dep.startswith("__") and (name := rattler.MatchSpec(dep).name) is not None
        }
        assert edges[record.name.normalized] == wanted, record.name.normalized
    assert any(edges.values()), "the fixture env has dependencies; the graph has none"
    # The environment itself contains every artifact.
    (root,) = [
        d for d in doc["dependencies"] if d["ref"] == doc["metadata"]["component"]["bom-ref"]
    ]
    assert set(root["dependsOn"]) == set(name_of)


def test_licenses_come_from_the_records(packed: tuple[Path, Path]) -> None:
    project, archive = packed
    doc = json.loads(members(archive)["sbom.cdx.json"])
    python = next(c for c in doc["components"] if c["name"] == "python")
    text = json.dumps(python["licenses"])
    (record,) = [r for r in lock_records(project / "pixi.lock") if r.name.normalized == "python"]
    assert record.license and record.license in text


# --- reproducible ------------------------------------------------------------------------------


def test_two_packs_of_one_lock_give_identical_sboms(
    packed: tuple[Path, Path], tmp_path: Path
) -> None:
    project, first = packed
    # Another cache, another hash seed, another process: still the same bytes.
    again = pack(project, tmp_path / "again.tar", env={"PYTHONHASHSEED": "12345"})
    assert members(first)["sbom.cdx.json"] == members(again)["sbom.cdx.json"]


def test_sbom_only_equals_the_archives_and_downloads_nothing(
    fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    # The lock points at a port nothing listens on: any download would fail.
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_v6, url, tmp_path / "project").parent
        archive = pack(project, tmp_path / "env.tar")
    out = tmp_path / "sbom.json"
    result = run_cli("envpack", project, "--sbom-only", "-o", out, "--cache", tmp_path / "none")
    assert result.returncode == 0, result.stderr.decode()
    assert out.read_bytes() == members(archive)["sbom.cdx.json"]
    assert not (tmp_path / "none").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_serial_number_follows_the_content() -> None:
    wheel = Artifact("wheel", "six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", "a" * 64)
    one = json.loads(sbom_json([Item(wheel)], Subject("default", "linux-64")))
    same = json.loads(sbom_json([Item(wheel)], Subject("default", "linux-64")))
    other = json.loads(sbom_json([Item(wheel)], Subject("default", "linux-aarch64")))
    assert one["serialNumber"] == same["serialNumber"]
    assert one["serialNumber"] != other["serialNumber"]
    assert one["serialNumber"].startswith("urn:uuid:")


@pytest.mark.parametrize("license_text", ["MIT", "urn:uuid:00000000-0000-0000-0000-000000000000"])
def test_the_serial_put_in_place_equals_the_library_rendering_it(license_text: str) -> None:
    # The serial goes into the draft's bytes; the library, told the serial, renders the same
    # document (a second nil UUID in the content takes the library's path).
    from envpack.packer import sbom as module

    conda = Artifact(
        "conda", "zlib", "1.3", "zlib-1.3-h0_0.conda", "b" * 64, None, 9, "h0_0", "linux-64"
    )
    items = [Item(conda, {"license": license_text, "depends": []})]
    got = sbom_json(items, Subject("default", "linux-64"))
    bom = module._bom(items, Subject("default", "linux-64"), envpack.__version__)
    bom.serial_number = uuid.UUID(json.loads(got)["serialNumber"][len("urn:uuid:") :])
    assert got == module._render(bom)


# --- what goes in ------------------------------------------------------------------------------


def test_no_token_or_password_in_the_sbom(fixture_channel: FixtureChannel, tmp_path: Path) -> None:
    # The channel served below /t/<token>/, fetched with user:password@ in the lock's URLs.
    root = tmp_path / "root"
    (root / "t").mkdir(parents=True)
    (root / "t" / TOKEN).symlink_to(fixture_channel.root)
    with serve_directory(root) as url:
        host = url.removeprefix("http://")
        base = f"http://alice:{PASSWORD}@{host}/t/{TOKEN}"
        project = lock_for(fixture_channel.lock_v6, base, tmp_path / "project").parent
        archive = pack(project, tmp_path / "env.tar")
    got = members(archive)
    sbom = got["sbom.cdx.json"]
    validate(sbom)
    for secret in (TOKEN, PASSWORD, "alice"):
        assert secret.encode() not in sbom
        assert all(secret.encode() not in data for data in got.values())
    doc = json.loads(sbom)
    for component in doc["components"]:
        (ref,) = component["externalReferences"]
        assert ref["url"].startswith(f"http://***@{host}/t/***/")
        # The channel is the channel, with no credentials at all.
        assert PackageURL.from_string(component["purl"]).qualifiers["channel"] == (f"http://{host}")


def test_record_without_license_still_gets_a_component(
    fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    lock = lock_for(fixture_channel.lock_v6, "http://127.0.0.1:9", tmp_path / "project")
    text = lock.read_text()
    assert "  license: " in text
    lock.write_text("".join(x for x in text.splitlines(True) if not x.startswith("  license")))
    out = tmp_path / "sbom.json"
    result = run_cli("envpack", lock.parent, "--sbom-only", "-o", out, "-q")
    assert result.returncode == 0, result.stderr.decode()
    validate(out.read_bytes())
    doc = json.loads(out.read_bytes())
    assert len(doc["components"]) == len(lock_records(lock))
    assert all("licenses" not in c for c in doc["components"])


def test_injected_packages_are_marked(fixture_channel: FixtureChannel, tmp_path: Path) -> None:
    lock = lock_for(fixture_channel.lock_v6, "http://127.0.0.1:9", tmp_path / "project")
    injected = fixture_channel.root / "linux-64" / "libhello-1.0.0-h9087c05_0.tar.bz2"
    out = tmp_path / "sbom.json"
    result = run_cli("envpack", lock.parent, "--sbom-only", "-o", out, "-q", "--inject", injected)
    assert result.returncode == 0, result.stderr.decode()
    validate(out.read_bytes())
    marked = [
        c
        for c in json.loads(out.read_bytes())["components"]
        if properties(c).get("envpack:injected") == "true"
    ]
    assert [c["name"] for c in marked] == ["libhello"]
    # A local file is no distribution point, and its path is the packing machine's business.
    assert "externalReferences" not in marked[0]
    assert "channel" not in PackageURL.from_string(marked[0]["purl"]).qualifiers


# --- --sbom-only as a command ------------------------------------------------------------------


def test_sbom_only_never_overwrites_the_lock(
    fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    lock = lock_for(fixture_channel.lock_v6, "http://127.0.0.1:9", tmp_path / "project")
    before = lock.read_bytes()
    result = run_cli("envpack", lock.parent, "--sbom-only", "-o", lock)
    assert_one_error_line(result, "is the lock")
    assert lock.read_bytes() == before
    assert sorted(p.name for p in lock.parent.iterdir()) == ["pixi.lock"]


def test_sbom_only_to_stdout_and_default_name(
    fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    lock = lock_for(fixture_channel.lock_v6, "http://127.0.0.1:9", tmp_path / "project")
    result = run_cli("envpack", lock.parent, "--sbom-only", "-o", "-", "-q")
    assert result.returncode == 0, result.stderr.decode()
    validate(result.stdout)
    default = run_cli("envpack", lock.parent, "--sbom-only", "-q", cwd=tmp_path)
    assert default.returncode == 0, default.stderr.decode()
    assert (tmp_path / "sbom.cdx.json").read_bytes() == result.stdout
    assert not (tmp_path / "environment.tar").exists()


@pytest.mark.skipif(not REAL_LOCKS, reason="../shared/real-locks is absent")
@pytest.mark.parametrize("lock", REAL_LOCKS, ids=[p.name for p in REAL_LOCKS])
def test_real_locks_give_valid_sboms(lock: Path, tmp_path: Path) -> None:
    env = rattler.LockFile.from_path(lock).environment("default")
    if env is None:
        pytest.skip("no default environment")
    platforms = sorted(p.name for p in env.platforms())
    if not platforms:
        pytest.skip("the default environment has no platforms")
    platform = "linux-64" if "linux-64" in platforms else platforms[0]
    out = tmp_path / "sbom.json"
    result = run_cli(
        "envpack",
        lock,
        "--sbom-only",
        "-o",
        out,
        "-p",
        platform,
        "-q",
        "--ignore-pypi-non-wheel",
    )
    if result.returncode != 0:
        # Locks envpack refuses to plan (source packages) are refused the same way here.
        assert_one_error_line(result)
        return
    validate(out.read_bytes())
    (locked,) = [p for p in env.platforms() if p.name == platform]
    packages = env.packages(locked) or []
    conda = [p for p in packages if isinstance(p, rattler.CondaLockedBinaryPackage)]
    wheels = [
        p
        for p in packages
        if isinstance(p, rattler.PypiLockedPackage) and p.location.split("#")[0].endswith(".whl")
    ]
    components = json.loads(out.read_bytes())["components"]
    assert len(components) == len(conda) + len(wheels)
    for component in components:
        purl = PackageURL.from_string(component["purl"])
        assert purl.type in ("conda", "pypi")
        assert purl.name == component["name"]
        assert b"/t/" not in out.read_bytes() or b"/t/***/" in out.read_bytes()


def test_hash_seed_does_not_change_the_bytes(tmp_path: Path) -> None:
    code = (
        "import sys; from envpack.core.models import Artifact; from envpack.packer.sbom import *;"
        "a = [Artifact('conda', n, '1', n + '-1-0.conda', 'a' * 64, None, 1, '0', 'noarch')"
        " for n in ('b', 'a', 'c')];"
        "sys.stdout.buffer.write(sbom_json([Item(x, {'depends': ['a', 'c']}) for x in a],"
        " Subject('e', 'linux-64')))"
    )
    outputs = set()
    for seed in ("0", "1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        validate(result.stdout)
        outputs.add(result.stdout)
    assert len(outputs) == 1


# --- the builder on its own --------------------------------------------------------------------


def _conda(name: str, filename: str | None = None) -> Artifact:
    return Artifact(
        "conda",
        name,
        "1.0",
        filename or f"{name}-1.0-h0_0.conda",
        "a" * 64,
        None,
        1,
        "h0_0",
        "linux-64",
    )


def _one(item: Item) -> dict[str, Any]:
    data = sbom_json([item], Subject("default", "linux-64"))
    validate(data)
    (component,) = json.loads(data)["components"]
    assert isinstance(component, dict)
    return component


def test_license_that_is_no_spdx_id_is_kept_as_a_name() -> None:
    component = _one(Item(_conda("x"), {"license": "Some Custom License"}))
    assert component["licenses"] == [{"license": {"name": "Some Custom License"}}]


def test_url_that_is_not_the_channel_layout_gives_no_channel() -> None:
    component = _one(Item(_conda("x"), {}, "https://mirror.example/x-1.0-h0_0.conda"))
    assert "channel" not in PackageURL.from_string(component["purl"]).qualifiers
    assert component["externalReferences"][0]["url"] == "https://mirror.example/x-1.0-h0_0.conda"


def test_local_file_url_is_not_recorded() -> None:
    component = _one(Item(_conda("x"), {}, "file:///home/me/channel/linux-64/x-1.0-h0_0.conda"))
    assert "externalReferences" not in component
    assert b"/home/me" not in json.dumps(component).encode()


def test_unreadable_depends_entry_names_no_edge() -> None:
    items = [
        Item(_conda("a"), {"depends": ["b >=1", "!!not a spec((", "c", "__glibc >=2.17"]}),
        Item(_conda("b")),
    ]
    data = sbom_json(items, Subject("default", "linux-64"))
    validate(data)
    graph = {d["ref"]: d.get("dependsOn", []) for d in json.loads(data)["dependencies"]}
    (a_ref,) = [r for r in graph if r.startswith("pkg:conda/a@")]
    assert [r.split("@")[0] for r in graph[a_ref]] == ["pkg:conda/b"]  # c is not in the env


def test_sbom_only_warns_about_records_without_sha256(
    fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    lock = lock_for(fixture_channel.lock_v6, "http://127.0.0.1:9", tmp_path / "project")
    text = lock.read_text()
    lines = text.splitlines(True)
    first = next(i for i, line in enumerate(lines) if line.startswith("  sha256: "))
    lock.write_text("".join(lines[:first] + lines[first + 1 :]))
    out = tmp_path / "sbom.json"
    result = run_cli("envpack", lock.parent, "--sbom-only", "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    stderr = result.stderr.decode()
    assert "1 artifacts have no sha256" in stderr and "error" not in stderr
    validate(out.read_bytes())
    unhashed = [
        c
        for c in json.loads(out.read_bytes())["components"]
        if not any(h["alg"] == "SHA-256" for h in c["hashes"])
    ]
    assert len(unhashed) == 1
    assert [h["alg"] for h in unhashed[0]["hashes"]] == ["MD5"]

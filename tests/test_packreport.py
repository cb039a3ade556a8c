"""envpack.packer.packreport called directly: the dry-run plan, the pack result and
`--sbom-only`, as text and as the --json documents docs/json.md describes."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.registries import PlainRegistry
from envpack.core.errors import UsageError
from envpack.core.manifest import artifact_to_json
from envpack.core.progress import SilentReporter
from envpack.packer.pack import PackOptions, PackResult, make_plan, pack
from envpack.packer.packreport import print_plan, print_result, write_sbom_only
from tests.ocifixtures import registry

__all__ = ["registry"]  # a fixture, used by name

# docs/json.md: the keys every document has, and the ones each command adds.
COMMON = {"command", "platform", "environment", "artifacts", "total_size"}
ADDS = {"plan": {"virtual_packages"}, "pack": {"output", "sha256", "size"}}
ARTIFACT = {"path", "kind", "name", "version", "build", "sha256", "size"}


@pytest.fixture(scope="module")
def options(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel, channel_url: str
) -> PackOptions:
    base = tmp_path_factory.mktemp("packreport")
    project = lock_for(fixture_channel.lock_v6, channel_url, base / "project").parent
    return PackOptions(manifest_path=project, output=None, cache_dir=base / "cache")


@pytest.fixture(scope="module")
def packed(options: PackOptions, tmp_path_factory: pytest.TempPathFactory) -> PackResult:
    out = tmp_path_factory.mktemp("packreport-out") / "env.tar"
    return pack(replace(options, output=out), SilentReporter())


def _document(text: str, command: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(text)
    assert set(doc) == COMMON | ADDS[command], doc.keys()
    assert doc["command"] == command
    assert doc["total_size"] == sum(a["size"] for a in doc["artifacts"])
    for artifact in doc["artifacts"]:
        assert set(artifact) >= ARTIFACT, artifact
        assert artifact["kind"] in ("conda", "wheel")
    return doc


def test_the_plan_as_json(options: PackOptions, capsys: pytest.CaptureFixture[str]) -> None:
    plan = make_plan(options, SilentReporter())
    print_plan(options, SilentReporter(), as_json=True)
    out, err = capsys.readouterr()
    doc = _document(out, "plan")
    assert (doc["platform"], doc["environment"]) == (plan.platform, plan.environment)
    assert doc["artifacts"] == [artifact_to_json(d.artifact) for d in plan.downloads]
    assert doc["virtual_packages"] == list(plan.virtual_packages)
    assert doc["total_size"] == plan.total_size
    assert err == ""


def test_the_plan_as_text(options: PackOptions, capsys: pytest.CaptureFixture[str]) -> None:
    plan = make_plan(options, SilentReporter())
    print_plan(options, SilentReporter(), as_json=False)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == len(plan.downloads) + 1
    for line, download in zip(lines, plan.downloads, strict=False):
        artifact = download.artifact
        assert line.split() == [
            artifact.name,
            artifact.version,
            artifact.build,
            f"{(artifact.size or 0) / 1e6:.2f}",
            "MB",
            artifact.kind,
        ]
    summary = lines[-1]
    assert summary.startswith(
        f"{len(plan.downloads)} artifacts, {plan.total_size / 1e6:.2f} MB for "
        f"{plan.environment} on {plan.platform}"
    )
    assert plan.virtual_packages  # the fixture's packages need __glibc
    assert summary.endswith(f", needs {', '.join(plan.virtual_packages)}")
    assert err == ""


def test_the_pack_result_as_json_on_stdout(
    packed: PackResult, capsys: pytest.CaptureFixture[str]
) -> None:
    assert packed.output is not None
    print_result(packed, as_json=True, quiet=False)
    out, err = capsys.readouterr()
    doc = _document(out, "pack")
    data = packed.output.read_bytes()
    assert doc["output"] == str(packed.output)
    assert (doc["sha256"], doc["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    assert doc["artifacts"] == [artifact_to_json(a) for a in packed.manifest.artifacts]
    assert doc["platform"] == packed.manifest.platform
    assert err == ""


def test_json_of_a_pack_to_stdout_goes_to_stderr(
    packed: PackResult, capsys: pytest.CaptureFixture[str]
) -> None:
    # stdout carried the archive itself.
    print_result(replace(packed, output=None), as_json=True, quiet=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert _document(err, "pack")["output"] == "stdout"


def test_the_pack_result_as_text_and_quiet(
    packed: PackResult, capsys: pytest.CaptureFixture[str]
) -> None:
    assert packed.output is not None
    print_result(packed, as_json=False, quiet=False)
    out, err = capsys.readouterr()
    size = packed.output.stat().st_size
    assert out == ""
    assert err == (
        f"packed {len(packed.manifest.artifacts)} artifacts into {packed.output} "
        f"({size / 1e6:.1f} MB, sha256 {packed.sha256})\n"
    )
    print_result(packed, as_json=False, quiet=True)
    assert capsys.readouterr() == ("", "")


def test_sbom_only_writes_the_sbom_and_says_where(
    options: PackOptions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "env.cdx.json"
    write_sbom_only(replace(options, output=out), SilentReporter(), False, False, False)
    data = out.read_bytes()
    sbom = json.loads(data)
    assert sbom["bomFormat"] == "CycloneDX"
    names = {c["name"] for c in sbom["components"]}
    assert {d.artifact.name for d in make_plan(options, SilentReporter()).downloads} <= names
    assert capsys.readouterr() == ("", f"wrote the SBOM to {out} ({len(data)} bytes)\n")


def test_sbom_only_quiet_prints_nothing(
    options: PackOptions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "env.cdx.json"
    write_sbom_only(replace(options, output=out), SilentReporter(), True, False, False)
    assert out.is_file()
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("create_executable", "image", "flag"),
    [(False, True, "--oci-image"), (True, False, "--create-executable")],
)
def test_sbom_only_with_an_archive_flag_is_a_usage_error(
    options: PackOptions,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    create_executable: bool,
    image: bool,
    flag: str,
) -> None:
    out = tmp_path / "env.cdx.json"
    with pytest.raises(UsageError) as caught:
        write_sbom_only(
            replace(options, output=out), SilentReporter(), False, create_executable, image
        )
    assert str(caught.value) == f"--sbom-only writes no archive: drop {flag}"
    assert not out.exists()
    assert capsys.readouterr() == ("", "")


def test_a_push_reports_its_reference_and_traffic(
    options: PackOptions, registry: PlainRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = f"oci://{registry.host}/report/env:1"
    pushed = pack(replace(options, registry=ref, insecure=True), SilentReporter())
    assert pushed.pushed is not None
    sent = pushed.pushed.traffic
    assert sent.blobs_uploaded == len(registry.uploads()) > 0
    print_result(pushed, as_json=False, quiet=False)
    assert capsys.readouterr() == (
        "",
        f"pushed {len(pushed.manifest.artifacts)} artifacts to {ref}@sha256:{pushed.sha256} "
        f"({sent.blobs_uploaded} blobs sent, {sent.uploaded / 1e6:.1f} MB; 0 already there)\n",
    )
    print_result(pushed, as_json=True, quiet=False)
    out, err = capsys.readouterr()
    doc = _document(out, "pack")
    assert (doc["output"], doc["sha256"], doc["size"]) == (ref, pushed.sha256, pushed.size)
    assert err == ""
    # The manifest the registry serves under the tag is the one reported, and the size is
    # that of the blobs it names (docs/json.md).
    served = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref[6:]}"],
        capture_output=True,
        check=True,
    ).stdout
    assert hashlib.sha256(served).hexdigest() == pushed.sha256
    manifest = json.loads(served)
    assert pushed.size == sum(d["size"] for d in [manifest["config"], *manifest["layers"]])
    print_result(pushed, as_json=False, quiet=True)
    assert capsys.readouterr() == ("", "")

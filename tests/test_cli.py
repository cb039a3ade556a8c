"""cli: envpack's typer layer, run in-process on the fixture project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envpack import __version__
from envpack.core.cliutil import EXIT_USAGE, run
from envpack.core.models import Manifest
from envpack.packer.cli import app
from envpack.packer.lockfile import plan_lock
from envpack.target.receive import read_manifest


def _envpack(*args: str | Path) -> int:
    return run(app, [str(a) for a in args], prog="envpack")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _envpack("--version") == 0
    assert capsys.readouterr().out == f"envpack {__version__}\n"


def test_dry_run_json_lists_the_lock(
    fixture_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _envpack(fixture_project, "--dry-run", "--json", "-p", "linux-64") == 0
    doc = json.loads(capsys.readouterr().out)
    plan, _ = plan_lock(fixture_project / "pixi.lock", "default", "linux-64")
    assert doc["command"] == "plan"
    assert doc["platform"] == "linux-64"
    assert doc["environment"] == "default"
    assert sorted(a["path"] for a in doc["artifacts"]) == sorted(
        d.artifact.path for d in plan.downloads
    )


def test_pack_then_refuse_to_overwrite_without_force(
    fixture_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "env.tar"
    cache = tmp_path / "cache"
    assert _envpack(fixture_project, "-o", out, "--cache", cache, "-q") == 0
    with out.open("rb") as stream:
        manifest = read_manifest(stream)  # zstd by default
    assert isinstance(manifest, Manifest)
    plan, _ = plan_lock(fixture_project / "pixi.lock", "default", manifest.platform)
    assert sorted(a.path for a in manifest.artifacts) == sorted(
        d.artifact.path for d in plan.downloads
    )
    before = out.read_bytes()
    capsys.readouterr()
    assert _envpack(fixture_project, "-o", out, "--cache", cache, "-q") == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"error: {out} already exists; pass --force to replace it"
    assert out.read_bytes() == before
    assert _envpack(fixture_project, "-o", out, "--cache", cache, "-q", "--force") == 0
    assert out.read_bytes() == before  # reproducible: the same bytes again


def test_contradicting_options_are_a_usage_error(
    fixture_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code = _envpack(fixture_project, "--sbom-only", "--create-executable", "-o", out / "x.json")
    assert code == EXIT_USAGE
    (line,) = capsys.readouterr().err.splitlines()
    assert line == "error: --sbom-only writes no archive: drop --create-executable"
    assert list(out.iterdir()) == []

"""ocistage: a verified folder pack installed below a staging root, every path naming the final
prefix; each package's files known for its layer; the records free of the build's temp dirs."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest

from envpack.core.errors import IncompatibleTargetError
from envpack.core.progress import SilentReporter
from envpack.packer.ocistage import stage
from tests.clirun import run_cli

DEST = PurePosixPath("/opt/tool/env")


@pytest.fixture
def folder_pack(fixture_project: Path, tmp_path: Path) -> Path:
    out = tmp_path / "pack"
    result = run_cli(
        "envpack", fixture_project, "--directory-only", "-o", out, "--cache", tmp_path / "c", "-q"
    )
    assert result.returncode == 0, result.stderr.decode()
    return out


def _origins(folder_pack: Path) -> dict[str, str]:
    files = [*folder_pack.glob("channel/*/*.conda"), *folder_pack.glob("channel/*/*.tar.bz2")]
    return {f.name: f"https://example.invalid/{f.parent.name}/{f.name}" for f in files}


def test_installed_for_the_final_prefix(folder_pack: Path, tmp_path: Path) -> None:
    origins = _origins(folder_pack)
    staged = stage(folder_pack, tmp_path / "work", DEST, "2.36", origins, SilentReporter())
    prefix = staged.root / "opt/tool/env"
    binary = (prefix / "bin" / "hello-c").read_bytes()
    assert str(DEST).encode() in binary
    assert str(tmp_path).encode() not in binary
    for meta in prefix.glob("conda-meta/*.json"):
        assert str(tmp_path) not in meta.read_text(), meta.name
    hello = json.loads(next(prefix.glob("conda-meta/hello-c-*.json")).read_text())
    assert hello["url"] == origins["hello-c-1.0.0-hccbdfe7_0.conda"]
    assert "link" not in hello and "extracted_package_dir" not in hello
    assert staged.env["FIXTURE_ENV_VAR"] == "from-env-vars-d"
    activate = (staged.root / "opt/tool/activate.sh").read_text()
    assert f"CONDA_PREFIX={DEST}" in activate and str(tmp_path) not in activate


def test_every_file_in_exactly_one_place(folder_pack: Path, tmp_path: Path) -> None:
    staged = stage(
        folder_pack, tmp_path / "work", DEST, None, _origins(folder_pack), SilentReporter()
    )
    names = {
        json.loads(p.read_text())["name"]
        for p in (staged.root / "opt/tool/env").glob("conda-meta/*.json")
    }
    assert {p.name for p in staged.parts} == names
    claimed = [f for p in staged.parts for f in p.files] + list(staged.rest)
    assert len(claimed) == len(set(claimed))
    on_disk = {
        p.relative_to(staged.root).as_posix()
        for p in staged.root.rglob("*")
        if not p.is_dir() or p.is_symlink()
    }
    assert set(claimed) == on_disk
    assert {"opt/tool/activate.sh", "opt/tool/sbom.cdx.json"} <= set(staged.rest)
    python = next(p for p in staged.parts if p.name == "python")
    assert "opt/tool/env/bin/python3.11" in python.files


def test_base_glibc_too_old_refused_before_linking(folder_pack: Path, tmp_path: Path) -> None:
    with pytest.raises(IncompatibleTargetError, match="glibc"):
        stage(folder_pack, tmp_path / "work", DEST, "2.17", {}, SilentReporter())
    assert not (tmp_path / "work" / "root").exists()

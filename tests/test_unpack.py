"""unpack: the orchestrator called in-process on the session's real archives."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from envpack.core.errors import EnvpackError, IncompatibleTargetError, OutputError, UsageError
from envpack.core.models import Manifest
from envpack.core.progress import SilentReporter
from envpack.target.unpack import UnpackOptions, check, describe, read_manifest, unpack


def _manifest(archive: Path) -> Manifest:
    with archive.open("rb") as stream:
        manifest = read_manifest(stream)
    assert isinstance(manifest, Manifest)
    return manifest


def test_unpack_a_stream_then_replace_it_with_force(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "app"
    warnings = io.StringIO()
    reporter = SilentReporter(warnings)
    manifest = _manifest(archives["zstd"])
    with archives["zstd"].open("rb") as stream:
        result = unpack(stream, UnpackOptions(out), reporter)
    env = out / "env"
    assert result.prefix == env
    assert result.platform == manifest.platform
    assert result.scripts == (out / "activate.sh", out / "deactivate.sh")
    conda = [a for a in manifest.artifacts if a.kind == "conda"]
    assert result.packages == len(conda)
    assert result.wheels == len(manifest.artifacts) - len(conda)
    assert result.sbom == out / "sbom.cdx.json"
    assert result.sbom.is_file()
    for a in conda:
        assert (env / "conda-meta" / f"{a.name}-{a.version}-{a.build}.json").is_file()
    assert (out / "activate.sh").read_text().startswith(f"# written by envunpack for {env}\n")
    assert sorted(p.name for p in out.iterdir()) == [
        "activate.sh",
        "deactivate.sh",
        "env",
        "sbom.cdx.json",
    ]
    hello = subprocess.run([env / "bin" / "hello-c"], capture_output=True, text=True, check=True)
    assert str(env) in hello.stdout

    # Again without --force: refused, and nothing touched.
    before = (env / "conda-meta" / "history").stat().st_mtime_ns
    with pytest.raises(OutputError, match="already exists; pass --force to replace it"):
        unpack(archives["zstd"].open("rb"), UnpackOptions(out), reporter)
    assert (env / "conda-meta" / "history").stat().st_mtime_ns == before

    # With --force, from the plain tar; its own scripts and SBOM are replaced without a word.
    (env / "stray-file").write_text("from the old env")
    with archives["none"].open("rb") as stream:
        again = unpack(stream, UnpackOptions(out, force=True), reporter)
    assert again.prefix == env
    assert not (env / "stray-file").exists()
    assert not list(out.glob(".envpack-staging-*"))
    assert warnings.getvalue() == ""


def test_a_users_own_activate_script_is_kept(archives: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "app"
    out.mkdir()
    (out / "activate.sh").write_text("# mine\n")
    with pytest.raises(OutputError) as info:
        unpack(archives["zstd"].open("rb"), UnpackOptions(out), SilentReporter())
    assert str(info.value) == f"{out / 'activate.sh'} already exists; pass --force to replace it"
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh"]
    (out / "activate.sh").unlink()
    (out / "sbom.cdx.json").write_text("{}")
    with pytest.raises(OutputError, match=r"sbom.cdx.json already exists"):
        unpack(archives["zstd"].open("rb"), UnpackOptions(out), SilentReporter())


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "has space", "x\n"])
def test_bad_env_names_are_refused_before_anything_is_read(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError, match="invalid --env-name"):
        unpack(io.BytesIO(b""), UnpackOptions(tmp_path / "out", env_name=name), SilentReporter())
    assert not (tmp_path / "out").exists()


def test_unknown_shell_is_refused_and_cmd_falls_back_to_bash(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown --shell 'tcsh'; choose from bash, zsh"):
        unpack(io.BytesIO(b""), UnpackOptions(tmp_path / "o", shell="tcsh"), SilentReporter())
    stream = io.StringIO()
    with pytest.raises(Exception) as info:  # the empty archive fails after the warning
        unpack(io.BytesIO(b""), UnpackOptions(tmp_path / "o", shell="cmd"), SilentReporter(stream))
    assert not isinstance(info.value, UsageError)
    assert stream.getvalue() == (
        "warning: --shell cmd: cmd.exe scripts only run on Windows and this environment is "
        "for Linux; writing the bash activation script instead\n"
    )
    assert not (tmp_path / "o").exists()


def test_an_archive_for_another_platform_writes_nothing(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "deep" / "app"
    with pytest.raises(IncompatibleTargetError, match="this archive is for linux-aarch64"):
        unpack(archives["aarch64"].open("rb"), UnpackOptions(out), SilentReporter())
    assert list(tmp_path.iterdir()) == []


def test_check_verifies_every_hash(archives: dict[str, Path]) -> None:
    manifest = _manifest(archives["zstd"])
    result = check(archives["zstd"].open("rb"), SilentReporter())
    assert result.platform == manifest.platform
    assert result.manifest == manifest
    assert result.packages + result.wheels == len(manifest.artifacts)
    assert result.size == sum(a.size or 0 for a in manifest.artifacts)
    # One byte of a package flipped: check finds it, as unpack would.
    artifact = next(a for a in manifest.artifacts if a.name == "libhello")
    with tarfile.open(archives["none"]) as tar:
        offset = tar.getmember(artifact.path).offset_data
    data = bytearray(archives["none"].read_bytes())
    data[offset + 100] ^= 0xFF
    with pytest.raises(EnvpackError) as info:
        check(io.BytesIO(bytes(data)), SilentReporter())
    assert artifact.filename in str(info.value)
    assert "sha256" in str(info.value)


def test_describe_an_envpack_and_a_pixi_pack_listing(archives: dict[str, Path]) -> None:
    manifest = _manifest(archives["zstd"])
    shown = describe(manifest)
    assert shown["format"] == "envpack"
    assert shown["platform"] == manifest.platform
    assert shown["artifacts"] == manifest.artifacts
    assert manifest.sbom is not None
    assert shown["sbom"] == {"path": manifest.sbom.path, "sha256": manifest.sbom.sha256}
    summary: dict[str, object] = {"format": "pixi-pack", "platform": "linux-64", "artifacts": []}
    assert describe(summary) == {"environment": None, "virtual_packages": [], **summary}


def test_a_conda_only_quiet_unpack_imports_no_wheel_or_bar_code(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    # A tiny env's unpack is mostly interpreter start and imports: tqdm (email,
    # importlib.metadata, csv) and pypa installer are only needed for bars and wheels.
    main = "from envpack.target.unpack_cli import main; main()"
    probe = [sys.executable, "-X", "importtime", "-c", main]
    result = subprocess.run(
        [*probe, str(archives["zstd"]), "-o", str(tmp_path / "app"), "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "envpack.target.unpack" in imported and "rattler" in imported  # the probe sees imports
    assert not {"tqdm", "installer", "email", "envpack.target.wheels", "packaging"} & imported
    assert (tmp_path / "app" / "env" / "conda-meta").is_dir()

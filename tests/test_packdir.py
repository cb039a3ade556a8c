"""`--directory-only` both ways: a folder pack written atomically, and `envunpack FOLDER`."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import rattler

from envpack.core.archive import iter_members
from envpack.core.errors import OutputError
from envpack.core.folder import iter_directory
from envpack.packer.packdir import DirectoryWriter, atomic_directory, check_directory_output
from tests.clirun import assert_one_error_line, run_cli

HOST = str(rattler.Subdir.current())


@pytest.fixture(scope="module")
def packs(tmp_path_factory: pytest.TempPathFactory, channel_url: str) -> dict[str, Path]:
    """The fixture env as a plain tar and as a folder, from the same cache."""
    from devtools.fixtures.channel import build, lock_for

    base = tmp_path_factory.mktemp("packdir")
    project = lock_for(build().lock_v6, channel_url, base / "project").parent
    common = ("--cache", base / "cache", "-q")
    tar = base / "env.tar"
    made = run_cli("envpack", project, "-o", tar, "--compression", "none", *common)
    assert made.returncode == 0, made.stderr.decode()
    made = run_cli("envpack", project, "--directory-only", *common, cwd=base)
    assert made.returncode == 0, made.stderr.decode()
    assert not list(base.glob(".environment.*"))
    return {"tar": tar, "folder": base / "environment", "project": project, "base": base}


def _copy_folder(folder: Path, dest: Path) -> Path:
    subprocess.run(["cp", "-a", str(folder), str(dest)], check=True)
    return dest


def test_folder_holds_the_archive_members_in_its_order(packs: dict[str, Path]) -> None:
    with packs["tar"].open("rb") as fh:
        from_tar = [(m.name, m.size, m.stream.read()) for m in iter_members(fh)]
    from_folder = [(m.name, m.size, m.stream.read()) for m in iter_directory(packs["folder"])]
    assert [m[0] for m in from_folder] == [m[0] for m in from_tar]
    assert from_folder == from_tar
    with tarfile.open(packs["tar"]) as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
    for name, _, _ in from_folder:
        assert (packs["folder"] / name).stat().st_mode & 0o777 == modes[name]


def test_envunpack_a_folder(packs: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli("envunpack", packs["folder"], "-o", tmp_path / "app", "-q")
    assert result.returncode == 0, result.stderr.decode()
    env = tmp_path / "app" / "env"
    hello = subprocess.run([env / "bin" / "hello-c"], capture_output=True, text=True, check=True)
    assert str(env) in hello.stdout
    listing = run_cli("envunpack", "--list", "--json", packs["folder"])
    assert json.loads(listing.stdout)["format"] == "envpack"


def test_a_pixi_pack_folder_unpacks(packs: dict[str, Path], tmp_path: Path) -> None:
    """pixi-pack's folder is its tar's layout: no envpack.json, checked by its repodata."""
    folder = _copy_folder(packs["folder"], tmp_path / "pixi-pack-folder")
    (folder / "envpack.json").unlink()
    assert json.loads((folder / "pixi-pack.json").read_text())["platform"] == HOST
    result = run_cli("envunpack", folder, "-o", tmp_path / "app", "-q")
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "app" / "env" / "bin" / "python3").exists()


def test_tampered_package_in_a_folder(packs: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy_folder(packs["folder"], tmp_path / "f")
    victim = next((folder / "channel" / HOST).glob("hello-c-*.conda"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = run_cli("envunpack", folder, "-o", tmp_path / "app")
    assert_one_error_line(result, victim.name, "sha256")
    assert not (tmp_path / "app").exists()


def test_symlink_in_a_folder_is_refused(packs: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy_folder(packs["folder"], tmp_path / "f")
    (folder / "channel" / "noarch" / "evil.conda").symlink_to("/etc/passwd")
    result = run_cli("envunpack", folder, "-o", tmp_path / "app")
    assert_one_error_line(result, "evil.conda", "links are not allowed")
    assert not (tmp_path / "app").exists()


def test_manifest_comes_first_in_a_folder_too(packs: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy_folder(packs["folder"], tmp_path / "f")
    (folder / "stray.txt").write_text("not part of a pack\n")
    result = run_cli("envunpack", folder, "-o", tmp_path / "app")
    assert_one_error_line(result, "stray.txt")
    assert not (tmp_path / "app").exists()


def test_folder_for_another_platform_fails_the_host_check(
    packs: dict[str, Path], tmp_path: Path
) -> None:
    other = "linux-aarch64" if HOST != "linux-aarch64" else "linux-64"
    folder = tmp_path / "other"
    made = run_cli(
        "envpack",
        packs["project"],
        *("--directory-only", "-o", folder, "-p", other, "--cache", packs["base"] / "cache"),
    )
    assert made.returncode == 0, made.stderr.decode()
    result = run_cli("envunpack", folder, "-o", tmp_path / "app")
    assert_one_error_line(result, other)
    assert not (tmp_path / "app").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-o", "-"], "-o"),
        (["--create-executable"], "exclude each other"),
        (["-o", "{existing}"], "already exists"),
        (["-o", "{missing}/x"], "does not exist"),
    ],
)
def test_folder_output_refused(
    packs: dict[str, Path], tmp_path: Path, args: list[str], needle: str
) -> None:
    existing = tmp_path / "there"
    existing.mkdir()
    (existing / "keep").write_text("mine")
    args = [a.format(existing=existing, missing=tmp_path / "nope") for a in args]
    cache = ("--cache", packs["base"] / "cache")
    result = run_cli("envpack", packs["project"], "--directory-only", *cache, *args, cwd=tmp_path)
    assert_one_error_line(result, needle)
    assert (existing / "keep").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"]


def test_full_disk_leaves_no_folder(
    packs: dict[str, Path], tmp_path: Path, small_tmpfs: Path
) -> None:
    result = run_cli(
        "envpack",
        packs["project"],
        *("--directory-only", "-o", small_tmpfs / "env", "--cache", packs["base"] / "cache"),
    )
    assert_one_error_line(result, "no space left")
    assert list(small_tmpfs.iterdir()) == []


def test_atomic_directory_removes_a_failed_folder(tmp_path: Path) -> None:
    output = tmp_path / "pack"
    with pytest.raises(RuntimeError), atomic_directory(output) as root:
        DirectoryWriter(root).add_bytes("a/b.txt", b"x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(output) as root:
        writer = DirectoryWriter(root)
        writer.add_bytes("a/b.txt", b"xyz")
    assert (output / "a" / "b.txt").read_bytes() == b"xyz" and writer.size == 3
    with pytest.raises(OutputError, match="already exists"):
        check_directory_output(output)


@pytest.mark.slow
def test_frozen_envunpack_unpacks_a_folder(packs: dict[str, Path], tmp_path: Path) -> None:
    """The static binary carries the folder reader too (it imports no packer module)."""
    from tests.test_unpacker_build import HOST_ARCH, frozen_unpacker

    binary = frozen_unpacker(HOST_ARCH)
    result = subprocess.run(
        [binary, packs["folder"], "-o", tmp_path / "app", "-q"], capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    hello = subprocess.run(
        [tmp_path / "app" / "env" / "bin" / "hello-c"], capture_output=True, text=True, check=True
    )
    assert str(tmp_path / "app" / "env") in hello.stdout

"""pkgcheck: real packages' file lists, and every way a list or a symlink could escape."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel
from envpack.core.errors import InstallError
from envpack.target.pkgcheck import Entry, check_entries, check_symlinks, package_entries


def _tar_payload(package: Path) -> dict[str, bool]:
    """What a .tar.bz2 will link: {path: is a symlink}, outside info/."""
    with tarfile.open(package, "r:bz2") as tar:
        return {
            m.name: m.issym()
            for m in tar.getmembers()
            if not m.isdir() and not m.name.startswith("info/")
        }


def test_entries_of_real_packages_match_their_payload(fixture_channel: FixtureChannel) -> None:
    packages = sorted((fixture_channel.root / "linux-64").glob("*.tar.bz2"))
    packages += sorted((fixture_channel.root / "noarch").glob("*.tar.bz2"))
    assert len(packages) >= 3
    for package in packages:
        entries = package_entries(package)
        assert {e.path: e.softlink for e in entries} == _tar_payload(package), package.name


def test_entries_of_a_conda_package(fixture_channel: FixtureChannel) -> None:
    (python,) = (fixture_channel.root / "linux-64").glob("python-3.11*.conda")
    paths = {e.path for e in package_entries(python)}
    assert "bin/python3.11" in paths
    assert any(p.startswith("lib/python3.11/") for p in paths)
    owners = check_entries([(python.name, package_entries(python))])
    assert owners["bin/python3.11"] == python.name


def _bz2(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:bz2") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_old_packages_list_their_files_in_info_files(tmp_path: Path) -> None:
    old = _bz2(
        tmp_path / "old-1.0-0.tar.bz2",
        {"info/files": b"bin/tool\n\nlib/libold.so\n", "info/index.json": b"{}"},
    )
    assert package_entries(old) == [Entry("bin/tool", False), Entry("lib/libold.so", False)]


def test_a_package_without_a_file_list_is_refused(tmp_path: Path) -> None:
    bare = _bz2(tmp_path / "bare-1.0-0.tar.bz2", {"info/index.json": b"{}"})
    with pytest.raises(InstallError, match=r"neither info/paths\.json nor info/files"):
        package_entries(bare)
    broken = tmp_path / "broken-1.0-0.conda"
    broken.write_bytes(b"not a zip")
    with pytest.raises(InstallError, match=r"broken-1.0-0.conda: cannot read its file list"):
        package_entries(broken)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("", "is not a valid path"),
        ("bin/a\x00b", "is not a valid path"),
        ("bin\\evil", "is not a valid path"),
        ("/etc/passwd", "is absolute"),
        ("../../etc/x", "climbs out of the environment"),
        ("lib/../../x", "climbs out of the environment"),
        ("conda-meta/other-1.0-0.json", "would overwrite the environment's metadata"),
    ],
)
def test_a_bad_path_is_refused_naming_the_package(path: str, problem: str) -> None:
    with pytest.raises(InstallError) as info:
        check_entries([("good-1-0", [Entry("bin/ok", False)]), ("evil-1-0", [Entry(path, False)])])
    assert str(info.value) == f"evil-1-0: file {path!r} {problem}; refusing to install it"


def test_a_file_below_another_packages_symlink_is_refused() -> None:
    links = ("links-1-0", [Entry("lib/sub", True)])
    below = ("below-1-0", [Entry("lib/sub/deep/file", False)])
    with pytest.raises(InstallError) as info:
        check_entries([links, below])
    assert str(info.value) == (
        "below-1-0: 'lib/sub/deep/file' lies below the symlink 'lib/sub' of links-1-0; "
        "refusing to write through it"
    )
    # Beside the link, not below it, is fine; names that merely share a prefix too.
    owners = check_entries([links, ("beside-1-0", [Entry("lib/subway", False)])])
    assert owners == {"lib/sub": "links-1-0", "lib/subway": "beside-1-0"}


def test_symlinks_inside_the_env_pass(tmp_path: Path) -> None:
    prefix = tmp_path / "staging" / "prefix"
    final = tmp_path / "app" / "env"
    (prefix / "lib").mkdir(parents=True)
    (prefix / "lib" / "libx.so.1").write_bytes(b"")
    (prefix / "lib" / "libx.so").symlink_to("libx.so.1")
    (prefix / "bin").mkdir()
    (prefix / "bin" / "up").symlink_to("../lib")
    (prefix / "bin" / "abs").symlink_to(final / "lib" / "libx.so.1")
    (prefix / "bin" / "root").symlink_to(final)
    check_symlinks(prefix, final, {})


@pytest.mark.parametrize(
    "target", ["/etc/passwd", "../../outside", "loop"], ids=["abs", "rel", "loop"]
)
def test_a_symlink_out_of_the_env_is_refused(tmp_path: Path, target: str) -> None:
    prefix = tmp_path / "prefix"
    (prefix / "lib").mkdir(parents=True)
    if target == "loop":
        target = "link"  # resolves to nothing: a loop is trusted nowhere
    (prefix / "lib" / "link").symlink_to(target)
    with pytest.raises(InstallError) as info:
        check_symlinks(prefix, tmp_path / "final", {"lib/link": "evil-1-0"})
    message = str(info.value)
    assert message.startswith("evil-1-0: symlink 'lib/link' points outside the environment")
    assert message.endswith("refusing to install it")


def test_an_unowned_bad_symlink_is_blamed_on_a_package(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    (prefix / "escape").symlink_to("/tmp")
    with pytest.raises(InstallError, match=r"^a package: symlink 'escape'"):
        check_symlinks(prefix, tmp_path / "final", {})

"""envpack.core.folder called directly: a folder pack read as the members of a tar, in the
tar's order, through the same check_member, refusing what an archive would refuse."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from envpack.core.archive import iter_members
from envpack.core.errors import ArchiveError
from envpack.core.folder import iter_directory, members_of
from envpack.core.layout import MANIFEST_NAME, METADATA_ORDER, PIXI_PACK_NAME
from tests.clirun import run_cli


@pytest.fixture(scope="module")
def packs(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel, channel_url: str
) -> dict[str, Path]:
    """One lock packed twice from one cache: as a zstd tar and with --directory-only."""
    base = tmp_path_factory.mktemp("folder")
    project = lock_for(fixture_channel.lock_v6, channel_url, base / "project").parent
    common = ("--cache", base / "cache", "-q")
    tar = base / "env.tar"
    made = run_cli("envpack", project, "-o", tar, *common)
    assert made.returncode == 0, made.stderr.decode()
    folder = base / "env-folder"
    made = run_cli("envpack", project, "--directory-only", "-o", folder, *common)
    assert made.returncode == 0, made.stderr.decode()
    return {"tar": tar, "folder": folder}


def _read(members: object) -> list[tuple[str, int, bytes]]:
    return [(m.name, m.size, m.stream.read()) for m in members]  # type: ignore[attr-defined]


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest, symlinks=True)
    return dest


def test_a_folder_gives_the_tars_members_in_the_tars_order(packs: dict[str, Path]) -> None:
    with packs["tar"].open("rb") as fh:
        from_tar = _read(iter_members(fh))
    from_folder = _read(iter_directory(packs["folder"]))
    assert from_folder == from_tar
    assert from_folder[0][0] == MANIFEST_NAME
    # Every file of the folder is a member, none twice, nothing made up.
    on_disk = {p.relative_to(packs["folder"]).as_posix() for p in packs["folder"].rglob("*")}
    assert {n for n, _, _ in from_folder} == {n for n in on_disk if (packs["folder"] / n).is_file()}


def test_the_same_names_as_the_session_archive_of_that_lock(
    packs: dict[str, Path], archives: dict[str, Path]
) -> None:
    # The session's plain tar was packed from the same lock served at another URL.
    with archives["none"].open("rb") as fh:
        names = [m.name for m in iter_members(fh)]
    assert [m.name for m in iter_directory(packs["folder"])] == names


def test_members_of_reads_a_path_as_a_folder_and_a_stream_as_an_archive(
    packs: dict[str, Path],
) -> None:
    with packs["tar"].open("rb") as fh:
        from_stream = _read(members_of(fh))
    assert _read(members_of(packs["folder"])) == from_stream


def test_repodata_comes_before_packages_and_metadata_first(tmp_path: Path) -> None:
    folder = tmp_path / "pack"
    files = [
        "zeta.txt",
        "channel/noarch/b-1-0.conda",
        "channel/noarch/repodata.json",
        "channel/linux-64/a-1-0.conda",
        "channel/linux-64/repodata.json",
        *reversed(METADATA_ORDER),
    ]
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    got = [(m.name, m.stream.read()) for m in iter_directory(folder)]
    repodata = sorted(n for n in files if n.endswith("/repodata.json"))
    others = sorted(set(files) - set(METADATA_ORDER) - set(repodata))
    assert [n for n, _ in got] == [*METADATA_ORDER, *repodata, *others]
    assert all(data == name.encode() for name, data in got)


def test_a_pixi_pack_folder_is_a_pack(tmp_path: Path) -> None:
    (tmp_path / PIXI_PACK_NAME).write_text("{}")
    (tmp_path / "environment.yml").write_text("name: x\n")
    assert [m.name for m in iter_directory(tmp_path)] == [PIXI_PACK_NAME, "environment.yml"]


def test_a_folder_without_a_manifest_is_refused_before_walking(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / MANIFEST_NAME).write_text("{}")  # only the top level counts
    (tmp_path / "escape").symlink_to("/")  # would be refused too, but is never reached
    with pytest.raises(ArchiveError, match="is a directory but no pack"):
        list(iter_directory(tmp_path))


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside"])
def test_a_symlinked_file_is_refused_before_any_member(
    packs: dict[str, Path], tmp_path: Path, target: str
) -> None:
    folder = _copy(packs["folder"], tmp_path / "pack")
    (folder / "channel" / "noarch" / "evil.conda").symlink_to(target)
    members = iter_directory(folder)
    # The whole folder is checked before its first member (the manifest) is handed out.
    with pytest.raises(ArchiveError, match=r"'channel/noarch/evil\.conda': links are not allowed"):
        next(members)


def test_a_symlinked_directory_escaping_the_folder_is_refused(
    packs: dict[str, Path], tmp_path: Path
) -> None:
    folder = _copy(packs["folder"], tmp_path / "pack")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x-1-0.conda").write_bytes(b"not ours")
    (folder / "channel" / "extra").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArchiveError, match="'channel/extra': links are not allowed"):
        list(iter_directory(folder))


def test_a_fifo_is_refused(packs: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(packs["folder"], tmp_path / "pack")
    os.mkfifo(folder / "channel" / "pipe")
    with pytest.raises(ArchiveError, match="'channel/pipe': devices and FIFOs are not allowed"):
        list(iter_directory(folder))


def test_a_setuid_file_is_refused(packs: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(packs["folder"], tmp_path / "pack")
    victim = next(p for p in (folder / "channel").rglob("*.conda"))
    victim.chmod(victim.stat().st_mode | stat.S_ISUID)
    name = victim.relative_to(folder).as_posix()
    with pytest.raises(ArchiveError, match=re.escape(f"'{name}': setuid/setgid bit set")):
        list(iter_directory(folder))


def test_a_file_gone_between_walk_and_read_is_one_archive_error(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("{}")
    (tmp_path / "late.txt").write_text("x")
    members = iter_directory(tmp_path)
    assert next(members).name == MANIFEST_NAME
    (tmp_path / "late.txt").unlink()
    with pytest.raises(ArchiveError, match=r"cannot read .*late\.txt: No such file"):
        next(members)

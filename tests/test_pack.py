"""envpack against the fixture channel served over real HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import rattler
import zstandard

from devtools.fixtures.channel import FixtureChannel
from devtools.fixtures.locks import PLACEHOLDER_URL
from tests.clirun import assert_one_error_line, run_cli


def _tar_members(archive: Path) -> list[tarfile.TarInfo]:
    data = archive.read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def _read_member(archive: Path, name: str) -> bytes:
    data = archive.read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def _lock_records(project: Path, platform: str) -> list[rattler.RepoDataRecord]:
    lock = rattler.LockFile.from_path(project / "pixi.lock")
    env = lock.environment("default")
    assert env is not None
    lock_platform = next(p for p in env.platforms() if p.name == platform)
    return env.conda_repodata_records_for_platform(lock_platform) or []


def pack(project: Path, out: Path, *args: str, cache: Path | None = None) -> Path:
    cache = cache or out.parent / "cache"
    result = run_cli("envpack", project, "-o", out, "--cache", cache, "-q", *args)
    assert result.returncode == 0, result.stderr.decode()
    return out


@pytest.mark.parametrize("platform", ["linux-64", "linux-aarch64"])
def test_archive_holds_exactly_the_locked_packages(
    fixture_project: Path, tmp_path: Path, platform: str
) -> None:
    archive = pack(fixture_project, tmp_path / "env.tar", "-p", platform)
    names = [m.name for m in _tar_members(archive)]
    assert names[:4] == ["envpack.json", "pixi-pack.json", "environment.yml", "sbom.cdx.json"]
    manifest = json.loads(_read_member(archive, "envpack.json"))
    records = _lock_records(fixture_project, platform)
    expected = {f"channel/{r.subdir}/{r.file_name}": r for r in records}
    assert {a["path"] for a in manifest["artifacts"]} == set(expected)
    for artifact in manifest["artifacts"]:
        record = expected[artifact["path"]]
        assert record.sha256 is not None
        assert artifact["sha256"] == record.sha256.hex()
        data = _read_member(archive, artifact["path"])
        assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
    assert manifest["platform"] == platform
    assert json.loads(_read_member(archive, "pixi-pack.json"))["platform"] == platform
    for subdir in ("noarch", platform):
        repodata = json.loads(_read_member(archive, f"channel/{subdir}/repodata.json"))
        listed = {**repodata["packages"], **repodata["packages.conda"]}
        assert set(listed) == {r.file_name for r in records if r.subdir == subdir}
    # No URL of any kind is shipped in the metadata the unpacker uses. The SBOM is the one
    # exception: recording where each artifact came from (credentials masked) is its job.
    metadata = [m.name for m in _tar_members(archive)[:6] if m.name != "sbom.cdx.json"]
    assert len(metadata) == 5
    blob = b"".join(_read_member(archive, name) for name in metadata)
    assert b"127.0.0.1" not in blob


def test_same_inputs_give_identical_bytes(fixture_project: Path, tmp_path: Path) -> None:
    for compression in ("zstd", "none"):
        a = pack(fixture_project, tmp_path / f"a-{compression}.tar", "--compression", compression)
        b = pack(
            fixture_project,
            tmp_path / f"b-{compression}.tar",
            "--compression",
            compression,
            cache=tmp_path / f"other-cache-{compression}",
        )
        assert a.read_bytes() == b.read_bytes(), compression


def test_plain_tar_has_fixed_metadata(fixture_project: Path, tmp_path: Path) -> None:
    archive = pack(fixture_project, tmp_path / "env.tar", "--compression", "none")
    assert archive.read_bytes()[:4] != b"\x28\xb5\x2f\xfd"
    for member in _tar_members(archive):
        assert member.isfile()
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
            0,
            0,
            0,
            "",
            "",
        )
        assert member.mode == 0o644


def test_zstd_is_smaller_than_plain(fixture_project: Path, tmp_path: Path) -> None:
    zst = pack(fixture_project, tmp_path / "z.tar")
    plain = pack(fixture_project, tmp_path / "p.tar", "--compression", "none")
    assert zst.stat().st_size < plain.stat().st_size


def test_v7_lock_packs_the_same_artifacts(
    fixture_project: Path, fixture_project_v7: Path, tmp_path: Path
) -> None:
    v6 = pack(fixture_project, tmp_path / "v6.tar")
    v7 = pack(fixture_project_v7, tmp_path / "v7.tar")
    m6 = json.loads(_read_member(v6, "envpack.json"))["artifacts"]
    m7 = json.loads(_read_member(v7, "envpack.json"))["artifacts"]
    assert m6 == m7


def test_mirror_redirects_downloads(
    tmp_path: Path, fixture_channel: FixtureChannel, channel_url: str
) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "pixi.lock").write_bytes(fixture_channel.lock_v6.read_bytes())
    archive = pack(project, tmp_path / "env.tar", "--mirror", f"{PLACEHOLDER_URL}={channel_url}")
    assert archive.stat().st_size > 0


def test_stdout_output(fixture_project: Path, tmp_path: Path) -> None:
    result = run_cli("envpack", fixture_project, "-o", "-", "--cache", tmp_path / "cache", "-q")
    assert result.returncode == 0, result.stderr.decode()
    file_out = pack(fixture_project, tmp_path / "env.tar")
    assert result.stdout == file_out.read_bytes()


def test_dry_run_json_lists_without_downloading(fixture_project: Path, tmp_path: Path) -> None:
    result = run_cli(
        "envpack", fixture_project, "--dry-run", "--json", "--cache", tmp_path / "cache"
    )
    assert result.returncode == 0, result.stderr.decode()
    doc = json.loads(result.stdout)
    records = _lock_records(fixture_project, str(rattler.Subdir.current()))
    assert doc["command"] == "plan"
    assert len(doc["artifacts"]) == len(records)
    assert doc["total_size"] == sum(r.size or 0 for r in records)
    assert not (tmp_path / "cache").exists()


# --- failures a user can cause ------------------------------------------------------------


def _edited_lock(project: Path, old: str, new: str) -> None:
    lock = project / "pixi.lock"
    text = lock.read_text()
    assert old in text
    lock.write_text(text.replace(old, new, 1))


def test_hash_mismatch_names_package_and_hashes(fixture_project: Path, tmp_path: Path) -> None:
    record = next(
        r for r in _lock_records(fixture_project, "linux-64") if r.name.normalized == "tabulate"
    )
    assert record.sha256 is not None
    good = record.sha256.hex()
    bad = "0" * 64
    _edited_lock(fixture_project, good, bad)
    result = run_cli(
        "envpack", fixture_project, "-o", tmp_path / "e.tar", "--cache", tmp_path / "c"
    )
    assert_one_error_line(result, "tabulate", good, bad)
    assert not (tmp_path / "e.tar").exists()
    assert not list(tmp_path.glob(".e.tar*"))
    # The cache is content-addressed: every file is named by its own sha256, none is partial.
    for cached in (p for p in (tmp_path / "c").rglob("*") if p.is_file()):
        assert not cached.name.endswith(".part"), cached
        if cached.parent.parent.name == "sha256":
            assert hashlib.sha256(cached.read_bytes()).hexdigest() == cached.name
    assert not list((tmp_path / "c").rglob(bad))


def test_404_fails_at_once_with_the_url(fixture_project: Path, tmp_path: Path) -> None:
    record = next(
        r for r in _lock_records(fixture_project, "linux-64") if r.name.normalized == "tabulate"
    )
    _edited_lock(fixture_project, record.file_name, "tabulate-0.0.0-missing.conda")
    result = run_cli(
        "envpack", fixture_project, "-o", tmp_path / "e.tar", "--cache", tmp_path / "c"
    )
    line = assert_one_error_line(result, "404", "tabulate-0.0.0-missing.conda")
    assert "attempts" not in line


def test_unreachable_host_gives_up_after_retries(
    fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "pixi.lock").write_text(
        fixture_channel.lock_v6.read_text().replace(PLACEHOLDER_URL, "http://127.0.0.1:9")
    )
    result = run_cli(
        "envpack",
        project,
        "-o",
        tmp_path / "e.tar",
        "--cache",
        tmp_path / "c",
        "--retries",
        "2",
        "--timeout",
        "2",
    )
    assert_one_error_line(result, "giving up", "127.0.0.1:9")


def test_unknown_environment_and_platform_list_choices(fixture_project: Path) -> None:
    assert_one_error_line(run_cli("envpack", fixture_project, "-e", "nope"), "nope", "default")
    assert_one_error_line(
        run_cli("envpack", fixture_project, "-p", "win-64"), "win-64", "linux-64", "linux-aarch64"
    )


def test_missing_and_invalid_lock(tmp_path: Path) -> None:
    assert_one_error_line(run_cli("envpack", tmp_path), "no lock file")
    (tmp_path / "pixi.lock").write_text("version: 6\nenvironments: [oops\n")
    assert_one_error_line(run_cli("envpack", tmp_path), "not a valid pixi.lock")


def test_output_directory_missing(fixture_project: Path, tmp_path: Path) -> None:
    result = run_cli("envpack", fixture_project, "-o", tmp_path / "nope" / "e.tar")
    assert_one_error_line(result, "does not exist")


@pytest.mark.parametrize("which", ["lock", "injected"])
def test_output_never_overwrites_an_input(
    fixture_project: Path, fixture_channel: FixtureChannel, tmp_path: Path, which: str
) -> None:
    injected = tmp_path / "libhello-1.0.0-h9087c05_0.tar.bz2"
    injected.write_bytes((fixture_channel.root / "linux-64" / injected.name).read_bytes())
    target = fixture_project / "pixi.lock" if which == "lock" else injected
    before = target.read_bytes()
    result = run_cli(
        "envpack", fixture_project, "-o", target, "--inject", injected, "--cache", tmp_path / "c"
    )
    assert_one_error_line(result, "choose another -o")
    assert target.read_bytes() == before
    assert not (tmp_path / "c").exists()


def test_output_is_a_directory(fixture_project: Path, tmp_path: Path) -> None:
    assert_one_error_line(run_cli("envpack", fixture_project, "-o", tmp_path), "directory")


def test_full_disk_leaves_nothing(fixture_project: Path, tmp_path: Path, small_tmpfs: Path) -> None:
    result = run_cli(
        "envpack",
        fixture_project,
        "-o",
        small_tmpfs / "e.tar",
        "--cache",
        tmp_path / "c",
        "--compression",
        "none",
    )
    assert_one_error_line(result, "no space left")
    assert list(small_tmpfs.iterdir()) == []


def test_cross_platform_pack_records_target(fixture_project: Path, tmp_path: Path) -> None:
    archive = pack(fixture_project, tmp_path / "arm.tar", "-p", "linux-aarch64")
    manifest = json.loads(_read_member(archive, "envpack.json"))
    subdirs = {a["path"].split("/")[1] for a in manifest["artifacts"]}
    assert subdirs <= {"noarch", "linux-aarch64"}
    assert "linux-aarch64" in subdirs


def test_writing_the_archive_draws_a_bar(fixture_project: Path, tmp_path: Path) -> None:
    from envpack.pack import PackOptions
    from envpack.pack import pack as pack_env
    from tests.test_receive import Recording

    recording = Recording()
    result = pack_env(
        PackOptions(fixture_project, tmp_path / "e.tar", cache_dir=tmp_path / "c"), recording
    )
    total = sum(a.size or 0 for a in result.manifest.artifacts)
    assert ("write", total) in recording.bars

"""`envpack --prefix`: an environment installed by rattler from the fixture channel, repacked."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import rattler

from devtools.fixtures.channel import FixtureChannel, lock_for
from envpack.packer.prefix import PrefixError, plan_prefix
from tests.clirun import assert_one_error_line, run_cli
from tests.test_install import _tree

# Downloads through this mirror fail at once: a pack that succeeds with it used no network.
NO_NETWORK = "--mirror"


def _records(project: Path) -> list[rattler.RepoDataRecord]:
    lock = rattler.LockFile.from_path(project / "pixi.lock")
    env = lock.environment("default")
    assert env is not None
    platform = next(p for p in env.platforms() if p.name == str(rattler.Subdir.current()))
    return env.conda_repodata_records_for_platform(platform) or []


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel, channel_url: str
) -> dict[str, Path]:
    """A prefix made by rattler.install, and a conda-style pkgs/ dir holding its archives."""
    base = tmp_path_factory.mktemp("prefix")
    project = lock_for(fixture_channel.lock_v6, channel_url, base / "project").parent
    records = _records(project)
    env = base / "env"
    asyncio.run(
        rattler.install(records, target_prefix=env, cache_dir=base / "rc", show_progress=False)
    )
    pkgs = base / "pkgs"
    pkgs.mkdir()
    for record in records:
        shutil.copy(fixture_channel.root / record.subdir / record.file_name, pkgs)
    return {"env": env, "pkgs": pkgs, "project": project, "home": base / "home"}


def _envpack(installed: dict[str, Path], *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    home = installed["home"]
    # A home of its own: no package cache of the developer's machine is found by accident.
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "CONDA_PKGS_DIRS": ""}
    return run_cli("envpack", *args, env=env)


def _copy(installed: dict[str, Path], tmp_path: Path) -> Path:
    env = tmp_path / "env"
    shutil.copytree(installed["env"], env, symlinks=True)
    return env


def _dead_mirror(channel_url: str) -> list[str]:
    return [NO_NETWORK, f"{channel_url}=http://127.0.0.1:9", "--retries", "1"]


def test_repacked_equals_a_fresh_install(
    installed: dict[str, Path], tmp_path: Path, channel_url: str
) -> None:
    archive = tmp_path / "env.tar"
    result = _envpack(
        installed,
        *("--prefix", installed["env"], "--use-cache", installed["pkgs"], "-o", archive),
        *_dead_mirror(channel_url),
    )
    assert result.returncode == 0, result.stderr.decode()
    assert "warning" not in result.stderr.decode().lower(), result.stderr.decode()
    dest = tmp_path / "out"
    result = run_cli("envunpack", archive, "-o", dest, "-q")
    assert result.returncode == 0, result.stderr.decode()
    ours = _tree(dest / "env")
    (dest / "env").rename(tmp_path / "moved-away")
    asyncio.run(
        rattler.install(
            _records(installed["project"]),
            target_prefix=dest / "env",
            cache_dir=tmp_path / "rc",
            show_progress=False,
        )
    )
    theirs = _tree(dest / "env")
    del theirs["CACHEDIR.TAG"]  # envunpack drops rattler's tag: backups would skip the env
    assert ours.keys() == theirs.keys()
    assert [k for k in ours if ours[k] != theirs[k]] == []
    hello = subprocess.run([dest / "env" / "bin" / "hello-c"], capture_output=True, text=True)
    assert str(dest / "env") in hello.stdout


def test_without_a_package_cache_it_downloads(
    installed: dict[str, Path], tmp_path: Path, channel_url: str
) -> None:
    cached = tmp_path / "cached.tar"
    args = ("--prefix", installed["env"], "--compression", "none")
    first = _envpack(installed, *args, "--use-cache", installed["pkgs"], "-o", cached)
    assert first.returncode == 0, first.stderr.decode()
    # The package cache the prefix was installed from is gone (rattler's only ever held
    # extracted packages, no archives): every package file must be downloaded.
    shutil.rmtree(installed["env"].parent / "rc")
    empty = tmp_path / "cache"
    downloaded = tmp_path / "downloaded.tar"
    offline = _envpack(
        installed, *args, "--cache", empty, "-o", downloaded, *_dead_mirror(channel_url)
    )
    assert_one_error_line(offline, "127.0.0.1:9")
    assert not downloaded.exists()
    second = _envpack(installed, *args, "--cache", empty, "-o", downloaded)
    assert second.returncode == 0, second.stderr.decode()
    stored = [p for p in (empty / "sha256").rglob("*") if p.is_file()]
    assert len(stored) == len(_records(installed["project"]))
    # The same package files either way: the very same archive bytes.
    assert downloaded.read_bytes() == cached.read_bytes()


def test_pip_installed_dist_is_refused_by_name(
    installed: dict[str, Path], tmp_path: Path, channel_url: str
) -> None:
    from tests.test_wheels import build_wheel

    env = _copy(installed, tmp_path)
    wheel = build_wheel(tmp_path / "wheel")
    site = env / "lib" / "python3.11" / "site-packages"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"),
            *("--disable-pip-version-check", "--prefix", str(env), str(wheel)),
        ],
        check=True,
        capture_output=True,
    )
    assert (site / "hello_envpack-1.0.dist-info" / "INSTALLER").read_text().strip() == "pip"
    archive = tmp_path / "env.tar"
    refused = _envpack(installed, "--prefix", env, "--use-cache", installed["pkgs"], "-o", archive)
    assert_one_error_line(refused, "hello_envpack-1.0 (pip)", "--inject", "--ignore-pip-installed")
    assert not archive.exists()
    skipped = _envpack(
        installed,
        *("--prefix", env, "--use-cache", installed["pkgs"], "-o", archive),
        *("--ignore-pip-installed", *_dead_mirror(channel_url)),
    )
    stderr = skipped.stderr.decode()
    assert skipped.returncode == 0, stderr
    warnings = [line for line in stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, stderr
    assert "hello_envpack-1.0 (pip)" in warnings[0]
    listing = run_cli("envunpack", "--list", "--json", archive)
    names = {a["name"] for a in json.loads(listing.stdout)["artifacts"]}
    assert "hello-envpack" not in names and "hello_envpack" not in names
    assert "python" in names
    # Shipped as the wheel it came from, the pip install is no longer in the way.
    shipped = _envpack(
        installed,
        *("--prefix", env, "--use-cache", installed["pkgs"], "-o", archive, "--force"),
        *("--inject", wheel),
        *_dead_mirror(channel_url),
    )
    assert shipped.returncode == 0, shipped.stderr.decode()
    assert "warning" not in shipped.stderr.decode()
    unpacked = run_cli("envunpack", archive, "-o", tmp_path / "app", "-q")
    assert unpacked.returncode == 0, unpacked.stderr.decode()
    assert (tmp_path / "app" / "env" / "bin" / "hello-envpack").is_file()


def test_changed_and_stray_files_are_reported(
    installed: dict[str, Path], tmp_path: Path, channel_url: str
) -> None:
    env = _copy(installed, tmp_path)
    site = env / "lib" / "python3.11" / "site-packages"
    edited = sorted(site.glob("dateutil/**/*.py"))[:11]
    assert len(edited) == 11
    for path in edited:
        path.write_text(path.read_text() + "\n# edited\n")
    (env / "bin" / "hello-c").unlink()
    (env / "notes.txt").write_text("mine\n")
    result = _envpack(
        installed,
        *("--prefix", env, "--use-cache", installed["pkgs"], "-o", tmp_path / "e.tar"),
        *_dead_mirror(channel_url),
    )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    changed = [line for line in stderr.splitlines() if "changed or deleted" in line]
    assert len(changed) == 1, stderr
    assert changed[0].count(", ") == 9 and "(and 2 more)" in changed[0]
    assert changed[0].split(": ", 1)[1].startswith("12 files")
    assert "bin/hello-c" in changed[0]
    assert any("notes.txt" in line and "no conda package" in line for line in stderr.splitlines())


def test_not_a_prefix(installed: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    result = _envpack(installed, "--prefix", tmp_path, "-o", tmp_path / "x.tar")
    assert_one_error_line(result, "not a conda environment", "conda-meta")
    assert not (tmp_path / "x.tar").exists()


def _edit_record(env: Path, name: str, *drop: str) -> Path:
    path = next((env / "conda-meta").glob(f"{name}-*.json"))
    doc = json.loads(path.read_text())
    for key in drop:
        doc.pop(key, None)
    path.write_text(json.dumps(doc))
    return path


def test_record_without_hash(installed: dict[str, Path], tmp_path: Path) -> None:
    env = _copy(installed, tmp_path)
    _edit_record(env, "tabulate", "sha256", "md5")
    result = _envpack(installed, "--prefix", env, "-o", tmp_path / "x.tar")
    assert_one_error_line(result, "tabulate 0.9.0", "no sha256 or md5")
    assert not (tmp_path / "x.tar").exists()


def test_record_without_url(installed: dict[str, Path], tmp_path: Path) -> None:
    env = _copy(installed, tmp_path)
    _edit_record(env, "tabulate", "url")
    result = _envpack(
        installed, "--prefix", env, "--use-cache", installed["pkgs"], "-o", tmp_path / "x.tar"
    )
    assert_one_error_line(result, "conda-meta/tabulate-0.9.0-pyh4616a5c_0.json", "`url`")
    assert not (tmp_path / "x.tar").exists()


def test_cache_archive_with_a_wrong_hash(installed: dict[str, Path], tmp_path: Path) -> None:
    pkgs = tmp_path / "pkgs"
    shutil.copytree(installed["pkgs"], pkgs)
    bad = next(pkgs.glob("tabulate-*"))
    bad.write_bytes(bad.read_bytes()[:-1] + b"\0")
    result = _envpack(
        installed, "--prefix", installed["env"], "--use-cache", pkgs, "-o", tmp_path / "x.tar"
    )
    assert_one_error_line(result, str(bad), "hash")
    assert not (tmp_path / "x.tar").exists()


def test_platform_disagreeing_with_the_prefix(installed: dict[str, Path], tmp_path: Path) -> None:
    other = "linux-aarch64" if str(rattler.Subdir.current()) != "linux-aarch64" else "linux-64"
    result = _envpack(installed, "--prefix", installed["env"], "-p", other, "-o", tmp_path / "x")
    assert_one_error_line(result, f"--platform {other}", str(rattler.Subdir.current()))


def test_dry_run_lists_the_prefix(installed: dict[str, Path]) -> None:
    result = _envpack(installed, "--prefix", installed["env"], "--dry-run", "--json")
    assert result.returncode == 0, result.stderr.decode()
    doc = json.loads(result.stdout)
    expected = {r.name.normalized for r in _records(installed["project"])}
    assert {a["name"] for a in doc["artifacts"]} == expected
    assert doc["platform"] == str(rattler.Subdir.current())


def test_plan_marks_cached_files_local(installed: dict[str, Path]) -> None:
    found = plan_prefix(installed["env"], None, [installed["pkgs"]])
    assert len(found.local) == len(found.plan.downloads) > 0
    for fetched in found.local:
        assert fetched.path.parent == installed["pkgs"]
    assert plan_prefix(installed["env"], None, []).local == ()


def test_empty_conda_meta(tmp_path: Path) -> None:
    (tmp_path / "conda-meta").mkdir()
    with pytest.raises(PrefixError, match="no packages"):
        plan_prefix(tmp_path, None, [])


def test_prefix_to_a_folder_and_own_platform(
    installed: dict[str, Path], tmp_path: Path, channel_url: str
) -> None:
    folder = tmp_path / "folder"
    args: list[str | Path] = ["--prefix", installed["env"], "--use-cache", installed["pkgs"]]
    args += ["--directory-only", "-o", folder, "-p", str(rattler.Subdir.current())]
    result = _envpack(installed, *args, *_dead_mirror(channel_url))
    assert result.returncode == 0, result.stderr.decode()
    unpacked = run_cli("envunpack", folder, "-o", tmp_path / "app", "-q")
    assert unpacked.returncode == 0, unpacked.stderr.decode()
    assert (tmp_path / "app" / "env" / "bin" / "hello-c").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["some.lock"], "drop the lock"), (["--ignore-pip-installed"], "only makes sense")],
)
def test_prefix_option_conflicts(
    installed: dict[str, Path], tmp_path: Path, args: list[str], needle: str
) -> None:
    if "--ignore-pip-installed" in args:
        result = _envpack(installed, installed["project"], *args, "--dry-run")
    else:
        result = _envpack(installed, *args, "--prefix", installed["env"], "--dry-run")
    assert_one_error_line(result, needle)

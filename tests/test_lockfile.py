"""Lock planning against the real pixi.lock files in ../shared/real-locks.

Expected values come from rattler's own view of each lock (or from the lock text itself),
never from the code under test.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import rattler

from devtools.fixtures.channel import FixtureChannel
from envpack.core.errors import LockError, UnsupportedEntryError
from envpack.packer.lockfile import LOCK_NAME, find_lock, plan_lock
from tests.clirun import assert_one_error_line, run_cli

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LOCKS_DIR = SHARED / "real-locks"
NEEDS_SHARED = pytest.mark.skipif(
    not LOCKS_DIR.is_dir(), reason=f"{LOCKS_DIR} is absent (it is not part of the repository)"
)

PYPI_NON_WHEEL = "Quantco_pixi-pack_examples_pypi-non-wheel-packages_pixi.lock"
PYPI_WHEEL = "Quantco_pixi-pack_examples_pypi-wheel-packages_pixi.lock"
LOCAL_BUILD = "Quantco_pixi-pack_examples_local-build_pixi.lock"
PIXI_V7 = "prefix-dev_pixi_pixi.lock"
SIMPLE = "Quantco_pixi-pack_examples_simple-python_pixi.lock"


@functools.cache
def _lock(path: Path) -> rattler.LockFile:
    return rattler.LockFile.from_path(path)


def _cases() -> list[tuple[str, str, str]]:
    if not LOCKS_DIR.is_dir():
        return []
    cases = []
    for path in sorted(LOCKS_DIR.iterdir()):
        for env_name, env in _lock(path).environments():
            for platform in env.platforms():
                cases.append((path.name, env_name, platform.name))
    return cases


def _packages(lock: str, env: str, platform: str) -> list[rattler.LockedPackage]:
    environment = _lock(LOCKS_DIR / lock).environment(env)
    assert environment is not None
    (plat,) = [p for p in environment.platforms() if p.name == platform]
    return list(environment.packages(plat) or [])


def _is_wheel(location: str) -> bool:
    return urlsplit(location.removeprefix("direct+")).path.endswith(".whl")


def _source_packages(packages: list[rattler.LockedPackage]) -> list[rattler.LockedPackage]:
    return [p for p in packages if isinstance(p, rattler.CondaLockedSourcePackage)]


# --- every real lock plans --------------------------------------------------------------------


@NEEDS_SHARED
@pytest.mark.parametrize(("lock", "env", "platform"), _cases())
def test_every_real_lock_plans(lock: str, env: str, platform: str) -> None:
    packages = _packages(lock, env, platform)
    sources = _source_packages(packages)
    if sources:
        with pytest.raises(UnsupportedEntryError) as info:
            plan_lock(LOCKS_DIR / lock, env, platform, ignore_pypi_non_wheel=True)
        for source in sources:
            assert source.name in str(info.value)
        return

    plan, warnings = plan_lock(LOCKS_DIR / lock, env, platform, ignore_pypi_non_wheel=True)

    conda = [p for p in packages if isinstance(p, rattler.CondaLockedBinaryPackage)]
    pypi = [p for p in packages if isinstance(p, rattler.PypiLockedPackage)]
    wheels = [p for p in pypi if _is_wheel(p.location)]
    records = [p.repo_data_record() for p in conda]

    assert (plan.environment, plan.platform) == (env, platform)
    assert len(plan.downloads) == len(conda) + len(wheels)
    assert plan.total_size == sum(r.size or 0 for r in records)
    assert len(warnings) == len(pypi) - len(wheels)

    planned_conda = {d.artifact.filename: d for d in plan.downloads if d.artifact.kind == "conda"}
    assert set(planned_conda) == {r.file_name for r in records}
    for record in records:
        download = planned_conda[record.file_name]
        assert download.url == str(record.url)
        assert download.artifact.name == record.name.normalized
        assert download.artifact.subdir == record.subdir
        assert download.artifact.size == record.size
        assert download.artifact.sha256 == (record.sha256.hex() if record.sha256 else None)
        assert download.artifact.md5 == (record.md5.hex() if record.md5 else None)
        assert download.artifact.path == f"channel/{record.subdir}/{record.file_name}"
        for key in ("fn", "url", "channel"):
            assert key not in download.record  # repodata entries say nothing about location

    planned_wheels = sorted(d.artifact.name for d in plan.downloads if d.artifact.kind == "wheel")
    assert planned_wheels == sorted(str(w.name) for w in wheels)

    paths = [d.artifact.path for d in plan.downloads]
    assert len(set(paths)) == len(paths), "two artifacts would land on one archive path"
    assert paths == sorted(paths)
    assert re.fullmatch(r"[0-9a-f]{64}", plan.lock_sha256)


@NEEDS_SHARED
def test_lock_sha256_is_the_file_hash() -> None:
    import hashlib

    path = LOCKS_DIR / SIMPLE
    plan, _ = plan_lock(path, "default", "linux-64")
    assert plan.lock_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# --- wheels ---------------------------------------------------------------------------------


@NEEDS_SHARED
def test_wheel_urls_and_hashes() -> None:
    lock = LOCKS_DIR / PYPI_WHEEL
    plan, warnings = plan_lock(lock, "default", "linux-64")
    assert warnings == []
    wheels = {d.artifact.name: d for d in plan.downloads if d.artifact.kind == "wheel"}
    assert set(wheels) == {"my-webserver", "numpy", "ordered-enum"}

    local = wheels["my-webserver"]
    expected = (lock.parent / "../webserver/my_webserver-0.1.0-py3-none-any.whl").resolve()
    assert local.url == expected.as_uri()
    assert local.artifact.path == "pypi/my_webserver-0.1.0-py3-none-any.whl"
    assert local.artifact.version == "0.1.0"

    numpy = wheels["numpy"]
    assert numpy.url.startswith("https://files.pythonhosted.org/")  # "direct+" is not a scheme
    assert numpy.artifact.filename.startswith("numpy-1.26.4-cp312-cp312-manylinux")

    # Straight from the lock text (line `sha256: 9382e8…` under the ordered_enum entry).
    assert wheels["ordered-enum"].artifact.sha256 == (
        "9382e88309b56dcbe06be43c4a586984d036b630863b53dbec5039655bab3e83"
    )


@NEEDS_SHARED
@pytest.mark.parametrize("platform", ["linux-64", "linux-aarch64", "osx-arm64"])
def test_sdists_without_the_flag_are_listed(platform: str) -> None:
    packages = _packages(PYPI_NON_WHEEL, "default", platform)
    sdists = [p for p in packages if isinstance(p, rattler.PypiLockedPackage)]
    sdists = [p for p in sdists if not _is_wheel(p.location)]
    assert sdists, "the fixture lock should hold at least one sdist here"
    with pytest.raises(UnsupportedEntryError) as info:
        plan_lock(LOCKS_DIR / PYPI_NON_WHEEL, "default", platform)
    message = str(info.value)
    for sdist in sdists:
        assert str(sdist.name) in message
        assert sdist.location in message
    assert "--ignore-pypi-non-wheel" in message


@NEEDS_SHARED
def test_sdists_with_the_flag_are_warned_about() -> None:
    plan, warnings = plan_lock(
        LOCKS_DIR / PYPI_NON_WHEEL, "default", "linux-64", ignore_pypi_non_wheel=True
    )
    assert any("pysdl2" in w and "PySDL2-0.9.16.tar.gz" in w for w in warnings)
    assert "pysdl2" not in {d.artifact.name for d in plan.downloads}


@NEEDS_SHARED
def test_source_packages_are_named() -> None:
    with pytest.raises(UnsupportedEntryError) as info:
        plan_lock(LOCKS_DIR / LOCAL_BUILD, "default", "linux-64", ignore_pypi_non_wheel=True)
    for name in ("local-build-local-pkg", "local-build-local-pkg-2", "local-build-main-pkg"):
        assert name in str(info.value)


# --- virtual packages -----------------------------------------------------------------------


@NEEDS_SHARED
def test_v7_virtual_packages_become_minimum_specs() -> None:
    linux, _ = plan_lock(LOCKS_DIR / PIXI_V7, "default", "linux-64")
    assert "__glibc >=2.28" in linux.virtual_packages
    assert "__linux >=4.18" in linux.virtual_packages
    mac, _ = plan_lock(LOCKS_DIR / PIXI_V7, "default", "osx-arm64")
    assert "__osx >=13.0" in mac.virtual_packages
    assert not [v for v in mac.virtual_packages if v.startswith("__glibc")]


@NEEDS_SHARED
def test_older_locks_take_virtual_packages_from_depends() -> None:
    records = [
        p.repo_data_record()
        for p in _packages(SIMPLE, "default", "linux-64")
        if isinstance(p, rattler.CondaLockedBinaryPackage)
    ]
    expected = {d for r in records for d in r.depends if d.startswith("__")}
    assert expected, "the simple-python lock's linux-64 packages declare __glibc"
    plan, _ = plan_lock(LOCKS_DIR / SIMPLE, "default", "linux-64")
    assert set(plan.virtual_packages) == expected


# --- errors -----------------------------------------------------------------------------------


@NEEDS_SHARED
def test_unknown_environment_lists_the_existing_ones() -> None:
    lock = LOCKS_DIR / PIXI_V7
    with pytest.raises(LockError) as info:
        plan_lock(lock, "nope", "linux-64")
    message = str(info.value)
    assert "'nope'" in message
    for name, _ in _lock(lock).environments():
        assert name in message


@NEEDS_SHARED
def test_unknown_platform_lists_the_existing_ones() -> None:
    lock = LOCKS_DIR / SIMPLE
    with pytest.raises(LockError) as info:
        plan_lock(lock, "default", "linux-riscv64")
    message = str(info.value)
    assert "linux-riscv64" in message
    env = _lock(lock).environment("default")
    assert env is not None
    for platform in env.platforms():
        assert platform.name in message


def test_missing_lock_file(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="no lock file"):
        find_lock(tmp_path / "absent.lock")
    with pytest.raises(LockError, match="no lock file"):
        find_lock(tmp_path)  # a directory without pixi.lock
    with pytest.raises(LockError):
        plan_lock(tmp_path / "absent.lock", "default", "linux-64")


def test_find_lock_accepts_a_project_directory(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("version: 6\n")
    assert find_lock(tmp_path) == tmp_path / LOCK_NAME
    assert find_lock(tmp_path / LOCK_NAME) == tmp_path / LOCK_NAME


@pytest.mark.parametrize(
    "content",
    [
        "environments: [unterminated\n  : : :",
        "",
        "just a string\n",
        "version: 99\nenvironments: {}\npackages: []\n",
        "version: 6\nenvironments:\n  default:\n    packages: 12\n",
        "\x00\x01\x02binary",
    ],
    ids=["bad-yaml", "empty", "scalar", "future-version", "wrong-shape", "binary"],
)
def test_invalid_lock_is_a_lock_error(tmp_path: Path, content: str) -> None:
    lock = tmp_path / LOCK_NAME
    lock.write_text(content)
    with pytest.raises(LockError) as info:
        plan_lock(lock, "default", "linux-64")
    assert str(lock) in str(info.value)
    assert "\n" not in str(info.value)  # one line, ready for `error: …`


def test_unreadable_lock_is_a_lock_error(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_NAME
    lock.mkdir()  # exists, but cannot be read as a file
    with pytest.raises(LockError):
        plan_lock(lock, "default", "linux-64")


@pytest.mark.parametrize("manifest", ["pixi.toml", "pyproject.toml"])
def test_find_lock_beside_a_manifest(tmp_path: Path, manifest: str) -> None:
    (tmp_path / manifest).write_text("[project]\nname = 'x'\n")
    with pytest.raises(LockError) as info:
        find_lock(tmp_path / manifest)
    assert str(info.value) == f"no pixi.lock next to {tmp_path / manifest}; run `pixi lock`"
    with pytest.raises(LockError, match=f"no pixi.lock next to {tmp_path / manifest}"):
        find_lock(tmp_path)  # the project directory
    (tmp_path / LOCK_NAME).write_text("version: 6\n")
    assert find_lock(tmp_path / manifest) == tmp_path / LOCK_NAME
    assert find_lock(tmp_path) == tmp_path / LOCK_NAME


def test_find_lock_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("version: 6\n")
    with pytest.raises(LockError, match="no manifest at"):
        find_lock(tmp_path / "pixi.toml")


# --- local PyPI entries in the fixture lock ------------------------------------------------------


def _add_pypi(project: Path, location: str, name: str, version: str, extra: str = "") -> None:
    """Add a PyPI entry for linux-64 to the fixture's v6 lock, as pixi writes one."""
    lock = project / LOCK_NAME
    text = lock.read_text()
    marker = "      linux-64:\n"
    assert marker in text
    text = text.replace(marker, f"{marker}      - pypi: {location}\n", 1)
    text += f"- pypi: {location}\n  name: {name}\n  version: '{version}'\n{extra}"
    lock.write_text(text)


@pytest.fixture
def local_wheel(fixture_project: Path) -> Path:
    from tests.test_wheels import build_wheel

    built = build_wheel(fixture_project.parent / "build")
    dist = fixture_project / "dist"
    dist.mkdir()
    return Path(shutil.copy(built, dist))


def test_local_path_wheel_is_packed_verified(
    fixture_project: Path, local_wheel: Path, tmp_path: Path
) -> None:
    digest = hashlib.sha256(local_wheel.read_bytes()).hexdigest()
    _add_pypi(
        fixture_project,
        f"./dist/{local_wheel.name}",
        "hello-envpack",
        "1.0",
        f"  sha256: {digest}\n  requires_python: '>=3.8'\n",
    )
    plan, warnings = plan_lock(fixture_project / LOCK_NAME, "default", "linux-64")
    assert warnings == []
    wheel = next(d for d in plan.downloads if d.artifact.kind == "wheel")
    assert wheel.url == local_wheel.resolve().as_uri()
    assert wheel.artifact.sha256 == digest
    archive = tmp_path / "env.tar"
    cache = ("--cache", tmp_path / "cache")
    packed = run_cli("envpack", fixture_project, "-o", archive, *cache, "-q", "-p", "linux-64")
    assert packed.returncode == 0, packed.stderr.decode()
    listing = json.loads(run_cli("envunpack", "--list", "--json", archive).stdout)
    entry = next(a for a in listing["artifacts"] if a["path"].startswith("pypi/"))
    assert entry["path"] == f"pypi/{local_wheel.name}" and entry["sha256"] == digest
    if str(rattler.Subdir.current()) == "linux-64":
        unpacked = run_cli("envunpack", archive, "-o", tmp_path / "app", "-q")
        assert unpacked.returncode == 0, unpacked.stderr.decode()
        assert (tmp_path / "app" / "env" / "bin" / "hello-envpack").is_file()
    # A wheel that is not the one the lock hashed is refused, naming it.
    local_wheel.write_bytes(local_wheel.read_bytes() + b"\0")
    again = run_cli(
        "envpack", fixture_project, "-o", archive, "--force", "--cache", tmp_path / "c2"
    )
    assert_one_error_line(again, "hello-envpack", "sha256 mismatch", local_wheel.name)


@pytest.mark.parametrize("location", [".", "./libs/helper"])
def test_editable_path_dependency_is_skipped_or_refused(
    fixture_project: Path, location: str
) -> None:
    (fixture_project / location).mkdir(parents=True, exist_ok=True)
    _add_pypi(fixture_project, location, "my-project", "0.1.0", "  editable: true\n")
    lock = fixture_project / LOCK_NAME
    plan, warnings = plan_lock(lock, "default", "linux-64")
    assert not any(d.artifact.kind == "wheel" for d in plan.downloads)
    assert len(warnings) == 1
    assert f"my-project ({location})" in warnings[0] and "--inject" in warnings[0]
    with pytest.raises(UnsupportedEntryError) as info:
        plan_lock(lock, "default", "linux-64", strict=True)
    assert f"my-project ({location})" in str(info.value) and "--inject" in str(info.value)
    refused = run_cli("envpack", fixture_project, "--strict", "--dry-run", "-p", "linux-64")
    assert_one_error_line(refused, "my-project", "--inject")
    skipped = run_cli("envpack", fixture_project, "--dry-run", "-p", "linux-64")
    assert skipped.returncode == 0, skipped.stderr.decode()
    assert [ln for ln in skipped.stderr.decode().splitlines() if "my-project" in ln] == [
        f"warning: {warnings[0]}"
    ]


def test_local_sdist_keeps_the_non_wheel_rule(fixture_project: Path) -> None:
    (fixture_project / "dist").mkdir()
    (fixture_project / "dist" / "x-1.0.tar.gz").write_bytes(b"")
    _add_pypi(fixture_project, "./dist/x-1.0.tar.gz", "x", "1.0")
    lock = fixture_project / LOCK_NAME
    with pytest.raises(UnsupportedEntryError, match="--ignore-pypi-non-wheel"):
        plan_lock(lock, "default", "linux-64", strict=False)
    _, warnings = plan_lock(lock, "default", "linux-64", ignore_pypi_non_wheel=True)
    assert warnings == ["skipping PyPI entry that is not a wheel: x (./dist/x-1.0.tar.gz)"]


def test_named_platform_by_name_or_subdir(fixture_channel: FixtureChannel, tmp_path: Path) -> None:
    """Lock v7 names platforms (pixi-pack's `-p jetson`); the plan is for the conda subdir."""
    source = rattler.LockFile.from_path(fixture_channel.lock_v7).environment("default")
    assert source is not None
    arm = next(p for p in source.platforms() if p.name == "linux-aarch64")
    records = source.conda_repodata_records_for_platform(arm) or []
    jetson = rattler.LockPlatform("jetson", rattler.Subdir("linux-aarch64"))
    lock = rattler.LockFile([jetson])
    lock.set_channels("default", [rattler.LockChannel("https://fixture.envpack.invalid/channel/")])
    for record in records:
        lock.add_conda_package("default", jetson, record)
    path = tmp_path / LOCK_NAME
    lock.to_path(path)
    by_name, _ = plan_lock(path, "default", "jetson")
    by_subdir, _ = plan_lock(path, "default", "linux-aarch64")
    assert by_name == by_subdir
    assert by_name.platform == "linux-aarch64"
    assert len(by_name.downloads) == len(records)
    with pytest.raises(LockError, match="jetson"):
        plan_lock(path, "default", "linux-64")

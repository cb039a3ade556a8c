"""The fixture channel is honest test data: its env installs and runs on glibc alone."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rattler
from rattler.package import PathsJson

from devtools.fixtures.channel import (
    PLATFORMS,
    SUBDIRS,
    FixtureChannel,
    build,
    cache_key,
    lock_for,
)
from devtools.fixtures.locks import PLACEHOLDER_URL
from tests.conftest import real_shared_dir

# What an env may take from the host: glibc and the kernel's vDSO, nothing else.
GLIBC = re.compile(
    r"(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libutil\.so\.1"
    r"|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1|linux-vdso\.so\.1)"
)
STDLIB_PROBE = """
import sys, ssl, sqlite3, ctypes, lzma, bz2, zlib, json, readline, uuid, decimal, curses
import _ssl, _sqlite3, _ctypes, _lzma, _bz2, _uuid, _decimal, _curses, pyexpat
for mod in (_ssl, _sqlite3, _ctypes, _lzma, _bz2, _uuid, _decimal, _curses, readline):
    assert mod.__file__.startswith(sys.prefix), mod.__file__
assert sqlite3.connect(":memory:").execute("select 40 + 2").fetchone() == (42,)
assert lzma.decompress(lzma.compress(b"x" * 100)) == b"x" * 100
assert bz2.decompress(bz2.compress(b"y" * 100)) == b"y" * 100
assert zlib.decompress(zlib.compress(b"z" * 100)) == b"z" * 100
assert decimal.Decimal("0.1") + decimal.Decimal("0.2") == decimal.Decimal("0.3")
assert ssl.create_default_context().protocol is not None
assert uuid.uuid4().version == 4
import sysconfig
print(json.dumps({
    "prefix": sys.prefix,
    "openssl": ssl.OPENSSL_VERSION,
    "purelib": sysconfig.get_paths()["purelib"],
    "config_prefix": sysconfig.get_config_var("prefix"),
}))
"""


def _records(lock: Path) -> dict[str, list[rattler.RepoDataRecord]]:
    env = rattler.LockFile.from_path(lock).default_environment()
    assert env is not None
    return env.conda_repodata_records()


def _clean_env(**extra: str) -> dict[str, str]:
    # The host exports PYTHON* and certificate variables; none may leak into the env's python.
    return {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", **extra}


def _install(records: list[rattler.RepoDataRecord], prefix: Path, platform: str) -> None:
    asyncio.run(
        rattler.install(
            records,
            prefix,
            cache_dir=prefix.parent / "pkgs",
            platform=rattler.Subdir(platform),
            show_progress=False,
        )
    )


@pytest.fixture(scope="module")
def installed_prefix(
    fixture_channel: FixtureChannel, channel_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The linux-64 env of the v6 lock, installed over HTTP into a prefix of a new length."""
    project = tmp_path_factory.mktemp("project")
    lock = lock_for(fixture_channel.lock_v6, channel_url, project)
    records = _records(lock)["linux-64"]
    assert all(r.url.startswith(channel_url + "/") for r in records)
    # A prefix unlike the build prefix, so every placeholder has to be rewritten.
    prefix = tmp_path_factory.mktemp("install") / "the-env"
    _install(records, prefix, "linux-64")
    return prefix


def _run(cmd: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=False, timeout=120, **kwargs
    )


def test_python_imports_stdlib_extensions_from_prefix(installed_prefix: Path) -> None:
    proc = _run([installed_prefix / "bin" / "python", "-I", "-c", STDLIB_PROBE], env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["prefix"] == str(installed_prefix)
    assert info["openssl"].startswith("OpenSSL 3.")
    # Text placeholders in _sysconfigdata and Debian's scheme switched to posix_prefix.
    assert info["config_prefix"] == str(installed_prefix)
    assert info["purelib"] == str(installed_prefix / "lib" / "python3.11" / "site-packages")


def test_noarch_packages_import_from_site_packages(installed_prefix: Path) -> None:
    code = (
        "import dateutil.parser, six, tabulate; "
        "print(dateutil.__file__); "
        "print(dateutil.parser.parse('2024-02-29T12:00').isoformat())"
    )
    proc = _run([installed_prefix / "bin" / "python", "-c", code], env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    where, parsed = proc.stdout.splitlines()
    site = installed_prefix / "lib" / "python3.11" / "site-packages"
    assert Path(where).is_relative_to(site)
    assert parsed == "2024-02-29T12:00:00"


def test_entry_point_runs(installed_prefix: Path) -> None:
    script = installed_prefix / "bin" / "tabulate"
    assert script.read_text().splitlines()[0] == f"#!{installed_prefix}/bin/python3.11"
    proc = _run([script, "-1"], input="name size\nfoo 1\n", env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^name\s+size$", proc.stdout, re.MULTILINE), proc.stdout


def test_text_placeholder_in_shebang(installed_prefix: Path) -> None:
    pydoc = installed_prefix / "bin" / "pydoc3.11"
    assert pydoc.read_text().splitlines()[0] == f"#!{installed_prefix}/bin/python3.11"
    proc = _run([pydoc, "json"], env=_clean_env(PAGER="cat"))
    assert proc.returncode == 0, proc.stderr
    assert "JSON" in proc.stdout


def test_c_program_carries_the_new_prefix(installed_prefix: Path) -> None:
    proc = _run([installed_prefix / "bin" / "hello-c"], env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    # Both binaries had the build prefix baked in; rattler rewrote them to this one.
    assert proc.stdout.splitlines() == [
        "hello from libhello",
        f"hello-c prefix: {installed_prefix}",
        f"libhello prefix: {installed_prefix}",
    ]


def test_activation_files_installed(installed_prefix: Path) -> None:
    etc = installed_prefix / "etc" / "conda"
    assert "FIXTURE_ACTIVATED" in (etc / "activate.d" / "fixture-activation.sh").read_text()
    assert (etc / "deactivate.d" / "fixture-activation.sh").is_file()
    env_vars = json.loads((etc / "env_vars.d" / "fixture-activation.json").read_text())
    assert env_vars == {"FIXTURE_ENV_VAR": "from-env-vars-d"}


def _elf_files(prefix: Path) -> Iterator[Path]:
    for path in sorted(prefix.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    yield path


def test_every_elf_file_resolves_to_prefix_or_glibc(installed_prefix: Path) -> None:
    if shutil.which("ldd") is None:
        pytest.skip("ldd is not installed")
    elves = list(_elf_files(installed_prefix))
    names = {p.name for p in elves}
    assert {"python3.11", "hello-c", "libssl.so.3", "libz.so.1.2.13"} <= names
    assert len(elves) > 60
    problems: list[str] = []
    for elf in elves:
        # LD_LIBRARY_PATH would hide a missing RPATH; a clean env shows what a target sees.
        proc = _run(["ldd", elf], env=_clean_env())
        for line in proc.stdout.splitlines():
            line = line.strip()
            if not line or "statically linked" in line:
                continue
            if "not found" in line:
                problems.append(f"{elf}: {line}")
                continue
            soname, _, resolved = line.partition(" => ")
            target = resolved.split(" (")[0] if resolved else soname.split(" (")[0]
            if Path(target).resolve().is_relative_to(installed_prefix.resolve()):
                continue
            if not GLIBC.fullmatch(Path(target).name):
                problems.append(f"{elf}: {soname} -> {target} comes from the host")
    assert not problems, "\n".join(problems)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_declared_glibc_covers_every_binary(installed_prefix: Path) -> None:
    """A package's `__glibc >=X` must be at least the newest GLIBC_ symbol its ELF files use.

    Installers refuse a too-old target glibc from these depends, so they must be true.
    """
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    all_elves = {str(p.relative_to(installed_prefix)) for p in _elf_files(installed_prefix)}
    checked = 0
    for meta in sorted((installed_prefix / "conda-meta").glob("*.json")):
        record = json.loads(meta.read_text())
        declared = [d for d in record["depends"] if d.startswith("__glibc ")]
        elves = [f for f in record["files"] if f in all_elves]
        if not elves:
            continue
        assert declared, f"{record['name']} ships ELF files but does not depend on __glibc"
        minimum = re.match(r"__glibc >=([0-9.]+)", declared[0])
        assert minimum, declared
        proc = _run(["objdump", "-T", *(installed_prefix / f for f in elves)])
        used = {_version_tuple(v) for v in re.findall(r"GLIBC_([0-9.]+)", proc.stdout)}
        assert max(used) <= _version_tuple(minimum.group(1)), record["name"]
        checked += 1
    assert checked >= 14


def test_v6_and_v7_locks_hold_the_same_records(fixture_channel: FixtureChannel) -> None:
    def key(r: rattler.RepoDataRecord) -> tuple[object, ...]:
        return (
            r.url,
            r.name.normalized,
            str(r.version),
            r.build,
            r.subdir,
            r.sha256,
            r.md5,
            r.size,
            sorted(r.depends),
            sorted(r.constrains),
            r.noarch.python,
            r.noarch.generic,
            r.license,
            r.timestamp,
        )

    v6, v7 = _records(fixture_channel.lock_v6), _records(fixture_channel.lock_v7)
    assert sorted(v6) == sorted(v7) == sorted(PLATFORMS)
    for platform in PLATFORMS:
        assert sorted(map(key, v6[platform])) == sorted(map(key, v7[platform]))


def test_locks_describe_the_whole_environment(fixture_channel: FixtureChannel) -> None:
    expected = {
        "python", "openssl", "libffi", "libsqlite", "libzlib", "bzip2", "liblzma",
        "libexpat", "ncurses", "readline", "libuuid", "libdb", "libxcrypt",
        "libhello", "hello-c", "six", "python-dateutil", "tabulate", "fixture-activation",
    }  # fmt: skip
    for lock in (fixture_channel.lock_v6, fixture_channel.lock_v7):
        for platform, records in _records(lock).items():
            assert {r.name.normalized for r in records} == expected, (lock, platform)
            for r in records:
                assert r.url.startswith(PLACEHOLDER_URL + "/"), r.url
                assert r.sha256 is not None and r.md5 is not None and r.size, r.url
                assert r.subdir in (platform, "noarch"), r.url
                path = fixture_channel.root / r.subdir / r.file_name
                assert path.stat().st_size == r.size, path


def test_static_lock_is_one_static_program_needing_no_glibc(
    fixture_channel: FixtureChannel, channel_url: str, tmp_path: Path
) -> None:
    records = _records(lock_for(fixture_channel.lock_static, channel_url, tmp_path))
    assert sorted(records) == sorted(PLATFORMS)
    for platform_records in records.values():
        assert [(r.name.normalized, r.depends) for r in platform_records] == [("busybox", [])]
    prefix = tmp_path / "env"
    _install(records["linux-64"], prefix, "linux-64")
    described = _run(["file", "-b", prefix / "bin" / "busybox"]).stdout
    assert "statically linked" in described, described
    assert _run([prefix / "bin" / "busybox", "echo", "static ok"]).stdout == "static ok\n"


def test_channel_layout(fixture_channel: FixtureChannel) -> None:
    root = fixture_channel.root
    files = [p for subdir in SUBDIRS for p in (root / subdir).iterdir()]
    assert {p.name for p in files if p.name.endswith(".json")} == {"repodata.json"}
    suffixes = {p.name.rsplit(".", 2)[-1] for p in files}
    assert {"conda", "bz2"} <= suffixes
    # rattler-build writes .conda files 0600; a server running as another user needs 0644.
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in files)
    for subdir in SUBDIRS:
        repodata = json.loads((root / subdir / "repodata.json").read_text())
        listed = set(repodata["packages"]) | set(repodata["packages.conda"])
        on_disk = {p.name for p in (root / subdir).iterdir()} - {"repodata.json"}
        assert listed == on_disk, subdir
    python = next((root / "linux-64").glob("python-3.11*.conda"))
    paths = PathsJson.from_package_archive(python).paths
    links = {str(e.relative_path) for e in paths if e.path_type.softlink}
    assert {"bin/python", "bin/python3"} <= links
    text = {
        str(e.relative_path)
        for e in paths
        if e.prefix_placeholder and e.prefix_placeholder.file_mode.text
    }
    assert "bin/pydoc3.11" in text
    assert any("_sysconfigdata_" in p for p in text)
    hello = next((root / "linux-64").glob("hello-c-*.conda"))
    binary = {
        str(e.relative_path)
        for e in PathsJson.from_package_archive(hello).paths
        if e.prefix_placeholder and e.prefix_placeholder.file_mode.binary
    }
    assert binary == {"bin/hello-c"}


def test_aarch64_env_runs_under_qemu(
    fixture_channel: FixtureChannel, channel_url: str, tmp_path: Path
) -> None:
    qemu, sysroot = shutil.which("qemu-aarch64-static"), Path("/usr/aarch64-linux-gnu")
    if qemu is None or not (sysroot / "lib" / "ld-linux-aarch64.so.1").exists():
        pytest.skip("needs qemu-user-static and libc6-arm64-cross")
    lock = lock_for(fixture_channel.lock_v7, channel_url, tmp_path / "project")
    prefix = tmp_path / "arm-env"
    _install(_records(lock)["linux-aarch64"], prefix, "linux-aarch64")
    # -L gives qemu an arm64 glibc only; everything else must come from the prefix.
    python = _run([qemu, "-L", sysroot, prefix / "bin" / "python3.11", "-I", "-c", STDLIB_PROBE])
    assert python.returncode == 0, python.stderr
    assert json.loads(python.stdout)["prefix"] == str(prefix)
    hello = _run([qemu, "-L", sysroot, prefix / "bin" / "hello-c"])
    assert hello.returncode == 0, hello.stderr
    assert f"hello-c prefix: {prefix}" in hello.stdout


def test_lock_for_points_every_url_at_the_server(
    fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    lock = lock_for(fixture_channel.lock_v6, "http://127.0.0.1:9/", tmp_path / "p")
    assert lock == tmp_path / "p" / "pixi.lock"
    text = lock.read_text()
    assert PLACEHOLDER_URL not in text
    for records in _records(lock).values():
        assert all(r.url.startswith("http://127.0.0.1:9/") for r in records)
        assert not any("//linux" in r.url or "//noarch" in r.url for r in records)


def test_project_fixtures_point_at_the_server(
    fixture_project: Path, fixture_project_v7: Path, channel_url: str
) -> None:
    for project in (fixture_project, fixture_project_v7):
        records = _records(project / "pixi.lock")
        assert all(r.url.startswith(channel_url) for rs in records.values() for r in rs)


def test_server_serves_the_channel(fixture_channel: FixtureChannel, channel_url: str) -> None:
    with urllib.request.urlopen(f"{channel_url}/noarch/repodata.json") as response:
        assert response.read() == (fixture_channel.root / "noarch" / "repodata.json").read_bytes()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{channel_url}/noarch/absent.conda")
    assert missing.value.code == 404


def test_build_is_a_cache_hit(fixture_channel: FixtureChannel) -> None:
    again = build()
    assert again == fixture_channel
    assert again.root.parent.name == cache_key()


def _real_locks() -> list[Path]:
    shared = real_shared_dir()
    return sorted((shared / "real-locks").iterdir()) if shared else []


@pytest.mark.skipif(real_shared_dir() is None, reason="../shared is absent (only in dev checkouts)")
@pytest.mark.parametrize("lock", _real_locks(), ids=lambda p: p.name)
def test_real_lock_parses(lock: Path) -> None:
    parsed = rattler.LockFile.from_path(lock)
    assert parsed.environments(), lock.name

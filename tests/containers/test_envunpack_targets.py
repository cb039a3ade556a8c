"""The mission, end to end: the frozen envunpack and an archive in a bare Debian, nothing else.

Each target gets a fresh container (or bwrap sandbox) with no python, no network and a
clean environment; the static unpacker and the archive are copied in, and the unpacked
env's own python has to run there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.httpserver import serve_directory
from tests.clirun import run_cli
from tests.containers.conftest import TargetFactory
from tests.containers.harness import EMPTY_TARGET, SUITES

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = {"amd64": "linux-64", "arm64": "linux-aarch64"}
MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}
GLIBC = {"bullseye": (2, 31), "bookworm": (2, 36), "trixie": (2, 41)}
# The fixture's CPython and libraries are Debian bookworm's: they need glibc 2.36.
FIXTURE_GLIBC = (2, 36)

APP = """\
import ctypes, sqlite3, ssl, sys
print("python", sys.version.split()[0], sys.prefix)
print("ssl", ssl.OPENSSL_VERSION)
print("sqlite", sqlite3.connect(":memory:").execute("select sqlite_version()").fetchone()[0])
print("ctypes", ctypes.CDLL(None).getpid() > 0)
"""


def unpacker(arch: str) -> Path:
    path = ROOT / "dist" / f"envunpack-{MACHINE[arch]}-linux"
    if not path.is_file():
        pytest.skip(f"{path.name} is not built: run scripts/build-unpacker --arch {MACHINE[arch]}")
    return path


@pytest.fixture(scope="module")
def archives(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel
) -> dict[str, Path]:
    """The fixture env for both platforms, as a plain archive and (if possible) self-extracting."""
    base = tmp_path_factory.mktemp("e2e")
    out: dict[str, Path] = {}
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_v6, url, base / "project").parent
        for arch, platform in PLATFORM.items():
            archive = base / f"env-{platform}.tar"
            result = run_cli(
                "envpack", project, "-p", platform, "-o", archive, "--cache", base / "c", "-q"
            )
            assert result.returncode == 0, result.stderr.decode()
            out[arch] = archive
            binary = ROOT / "dist" / f"envunpack-{MACHINE[arch]}-linux"
            if binary.is_file():
                run = base / f"env-{platform}.run"
                result = run_cli(
                    "envpack",
                    project,
                    "-p",
                    platform,
                    "-o",
                    run,
                    "--cache",
                    base / "c",
                    "-q",
                    "--create-executable",
                    "--unpacker",
                    binary,
                )
                assert result.returncode == 0, result.stderr.decode()
                out[f"{arch}-run"] = run
    app = base / "app.py"
    app.write_text(APP)
    out["app"] = app
    return out


RUN_ENV = """\
set -e
/app/env/bin/python /work/app.py
/app/env/bin/hello-c
/app/env/bin/tabulate --help | head -n 1
. /app/activate.sh
echo "on PATH: $(command -v python3) $(command -v hello-c)"
echo "CONDA_PREFIX=$CONDA_PREFIX"
"""


def _check_env_output(stdout: str) -> None:
    assert "python 3.11" in stdout and "/app/env" in stdout, stdout
    assert "ssl OpenSSL" in stdout, stdout
    assert "sqlite 3." in stdout, stdout
    assert "ctypes True" in stdout, stdout
    assert "on PATH: /app/env/bin/python3 /app/env/bin/hello-c" in stdout, stdout
    assert "CONDA_PREFIX=/app/env" in stdout, stdout


@pytest.mark.parametrize(("suite", "arch"), SUITES, ids=[f"{s}-{a}" for s, a in SUITES])
def test_frozen_envunpack_in_bare_debian(
    bare_target: TargetFactory, archives: dict[str, Path], suite: str, arch: str
) -> None:
    binary = unpacker(arch)
    target = bare_target(suite, arch)
    script = "cd /work && ./envunpack env.tar -o /app\n"
    if GLIBC[suite] >= FIXTURE_GLIBC:
        script += RUN_ENV
    result = target.run(
        script,
        files={
            "/work/envunpack": binary,
            "/work/env.tar": archives[arch],
            "/work/app.py": archives["app"],
        },
        timeout=900,
    )
    if GLIBC[suite] >= FIXTURE_GLIBC:
        assert result.exit_code == 0, result.stdout + result.stderr
        _check_env_output(result.stdout)
        # The C program's baked-in prefix is a binary placeholder rattler rewrote.
        assert "/app/env" in result.stdout
    else:
        # An older glibc than the packages need: one clear line, and nothing unpacked.
        lines = result.stderr.strip().splitlines()
        assert result.exit_code != 0
        assert lines[-1].startswith("error: ") and "glibc" in lines[-1], result.stderr
        assert "Traceback" not in result.stderr


def test_bullseye_refusal_leaves_nothing(
    bare_target: TargetFactory, archives: dict[str, Path]
) -> None:
    target = bare_target("bullseye", "amd64")
    result = target.run(
        "cd /work && ./envunpack env.tar -o /app; echo exit=$?; ls -A /app 2>&1 || true",
        files={"/work/envunpack": unpacker("amd64"), "/work/env.tar": archives["amd64"]},
    )
    assert "exit=1" in result.stdout, result.stdout + result.stderr
    assert "No such file or directory" in result.stdout, result.stdout


def test_empty_root(bare_target: TargetFactory, archives: dict[str, Path]) -> None:
    """No libc, no shell, nothing: the static unpacker still starts and says what is wrong."""
    suite, arch = EMPTY_TARGET
    target = bare_target(suite, arch)
    files = {"/work/envunpack": unpacker(arch), "/work/env.tar": archives[arch]}
    version = target.run(["/work/envunpack", "--version"], files=files)
    assert version.exit_code == 0, version.stderr
    assert version.stdout.startswith("envunpack ") and "static" in version.stdout
    refused = target.run(["/work/envunpack", "/work/env.tar", "-o", "/tmp/app"], files=files)
    assert refused.exit_code != 0
    assert refused.stderr.strip().splitlines()[-1].startswith("error: "), refused.stderr
    assert "glibc" in refused.stderr


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_self_extracting_file(
    bare_target: TargetFactory, archives: dict[str, Path], arch: str
) -> None:
    unpacker(arch)
    run = archives.get(f"{arch}-run")
    assert run is not None
    target = bare_target("bookworm", arch)
    listing = target.run("/work/env.run --list", files={"/work/env.run": run})
    assert listing.exit_code == 0, listing.stderr
    assert "python" in listing.stdout
    result = target.run(
        "cd /work && ./env.run -o /app\n" + RUN_ENV,
        files={"/work/env.run": run, "/work/app.py": archives["app"]},
        timeout=900,
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    _check_env_output(result.stdout)


def test_tampered_self_extracting_file_is_refused(
    bare_target: TargetFactory, archives: dict[str, Path], tmp_path: Path
) -> None:
    unpacker("amd64")
    data = bytearray(archives["amd64-run"].read_bytes())
    data[-5000] ^= 0xFF
    bad = tmp_path / "env.run"
    bad.write_bytes(bytes(data))
    bad.chmod(0o755)
    result = bare_target("bookworm", "amd64").run(
        "/work/env.run -o /app; echo exit=$?; ls -A /app 2>&1 || true", files={"/work/env.run": bad}
    )
    assert "exit=1" in result.stdout, result.stdout + result.stderr
    assert "corrupt" in result.stderr
    assert "No such file or directory" in result.stdout


def test_pixi_pack_style_plain_tar_from_stdin(
    bare_target: TargetFactory, fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    """--compression none is a plain tar; read from stdin, as in `curl … | envunpack -`."""
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_v6, url, tmp_path / "p").parent
        archive = tmp_path / "env.tar"
        packed = run_cli(
            "envpack", project, "-o", archive, "--compression", "none", "--cache", tmp_path / "c"
        )
        assert packed.returncode == 0, packed.stderr.decode()
    script = "cd /work && ./envunpack - -o /app < env.tar && /app/env/bin/python3 -c 'import ssl'"
    result = bare_target("bookworm", "amd64").run(
        script, files={"/work/envunpack": unpacker("amd64"), "/work/env.tar": archive}
    )
    assert result.exit_code == 0, result.stdout + result.stderr


def _pypi_wheels(dest: Path) -> list[Path]:
    """numpy (manylinux, cp311) and a pure-Python package with a console script, from PyPI."""
    import subprocess
    import sys

    dest.mkdir(parents=True, exist_ok=True)
    common = ["--only-binary=:all:", "--no-deps", "-d", str(dest), "-q"]
    for args in (
        ["numpy==2.2.6", "--python-version", "3.11", "--platform", "manylinux2014_x86_64"],
        ["cowsay==6.1"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", *common, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"PyPI unreachable: {result.stderr.strip().splitlines()[-1:]}")
    return sorted(dest.glob("*.whl"))


@pytest.mark.network
def test_pypi_wheels_install_offline_in_bare_debian(
    bare_target: TargetFactory, fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    """Wheels go into the archive verified and are installed on the target without pip."""
    wheels = _pypi_wheels(tmp_path / "wheels")
    assert {w.name.split("-")[0] for w in wheels} == {"numpy", "cowsay"}
    archive = tmp_path / "env.tar"
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_v6, url, tmp_path / "p").parent
        inject = [arg for w in wheels for arg in ("--inject", str(w))]
        packed = run_cli("envpack", project, "-o", archive, "--cache", tmp_path / "c", *inject)
        assert packed.returncode == 0, packed.stderr.decode()
    script = (
        "set -e; cd /work && ./envunpack env.tar -o /app -q\n"
        "/app/env/bin/python -c 'import numpy; print(numpy.arange(3).sum())'\n"
        "/app/env/bin/cowsay -t moo | head -n 3\n"
        "head -n 1 /app/env/bin/cowsay\n"
        "cat /app/env/lib/python3.11/site-packages/numpy-*.dist-info/INSTALLER\n"
        "command -v pip || echo 'no pip'\n"
    )
    result = bare_target("bookworm", "amd64").run(
        script, files={"/work/envunpack": unpacker("amd64"), "/work/env.tar": archive}, timeout=900
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "3"
    assert "moo" in result.stdout
    assert "#!/app/env/bin/python3.11" in result.stdout
    assert "envpack" in lines
    assert "no pip" in lines

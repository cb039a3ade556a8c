"""App files: `--entrypoint` checked at pack time, and the file's layout around the launcher."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from envpack.core import selfextract
from envpack.core.errors import EnvpackError, UsageError
from envpack.packer import appfile
from tests.clirun import assert_one_error_line, run_cli
from tests.stubunpacker import build_stub_unpacker

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stub envunpack and the real launcher, side by side as envpack looks for them."""
    directory = tmp_path_factory.mktemp("tools")
    build_stub_unpacker(directory)
    subprocess.run(
        [ROOT / "scripts" / "build-launcher", "--arch", "x86_64", "--out", directory], check=True
    )
    return directory


def _pack(
    project: Path, tools: Path, out: Path, *args: str, arch: str = "x86_64"
) -> subprocess.CompletedProcess[bytes]:
    return run_cli(
        "envpack",
        project,
        "--create-executable",
        "--unpacker",
        tools / f"envunpack-{arch}-linux",
        "-o",
        out,
        "--cache",
        out.parent / "cache",
        "-q",
        *args,
    )


def test_parse_entrypoint() -> None:
    assert appfile.parse_entrypoint("python -m 'my app'") == ["python", "-m", "my app"]
    for bad, needle in [("", "empty"), ("/usr/bin/python", "not a path"), ("'x", "quotation")]:
        with pytest.raises(UsageError, match=needle):
            appfile.parse_entrypoint(bad)


def test_check_entrypoint_names_what_is_missing() -> None:
    appfile.check_entrypoint(["python", "-m", "x"], {"python", "hello-c"})
    appfile.check_entrypoint(["hello-c"], {"python", "hello-c"})
    with pytest.raises(EnvpackError, match=r"no python in bin/"):
        appfile.check_entrypoint(["python", "-m", "x"], {"hello-c"})
    with pytest.raises(EnvpackError, match=r"similar: hello-c"):
        appfile.check_entrypoint(["hello"], {"python", "hello-c"})


def test_app_file_layout(fixture_project: Path, tools: Path, tmp_path: Path) -> None:
    out = tmp_path / "app.run"
    result = _pack(fixture_project, tools, out, "--entrypoint", "python -m json.tool")
    assert result.returncode == 0, result.stderr.decode()
    # fixture-activation ships a shell script in activate.d: said at pack time.
    warning = result.stderr.decode()
    assert "activate.d scripts (fixture-activation.sh)" in warning and "/bin/sh" in warning
    data = out.read_bytes()
    launcher = (tools / "envpack-launcher-x86_64-linux").read_bytes()
    stub = (tools / "envunpack-x86_64-linux").read_bytes()
    at = data.find(appfile.LAUNCHER_MAGIC)
    assert 0 < at < len(launcher)
    _, argv_at, argv_len, unpacker_at, unpacker_len = struct.unpack_from("<16sQQQQ", data, at)
    assert argv_at == len(launcher)
    assert data[argv_at : argv_at + argv_len] == b"python\0-m\0json.tool\0\0"
    assert data[unpacker_at : unpacker_at + unpacker_len] == stub
    # The trailer is that of any self-extracting file: envunpack reads it unchanged.
    payload = selfextract.find_payload(out)
    assert payload is not None and payload.offset == unpacker_at + unpacker_len + 64
    selfextract.verify(payload)
    assert len(data) - len(stub) - payload.length - 128 == len(launcher) + argv_len


def test_console_script_of_a_wheel_and_bin_of_a_conda_package(
    fixture_project: Path, tools: Path, tmp_path: Path
) -> None:
    for entry in ("hello-c", "tabulate"):
        result = _pack(fixture_project, tools, tmp_path / f"{entry}.run", "--entrypoint", entry)
        assert result.returncode == 0, result.stderr.decode()


def test_unknown_entrypoint_is_refused_and_nothing_written(
    fixture_project: Path, tools: Path, tmp_path: Path
) -> None:
    out = tmp_path / "app.run"
    result = _pack(fixture_project, tools, out, "--entrypoint", "hello --loud")
    line = assert_one_error_line(result, "--entrypoint hello")
    assert "hello-c" in line
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if "app.run" in p.name]


def test_entrypoint_needs_create_executable(fixture_project: Path, tmp_path: Path) -> None:
    result = run_cli(
        "envpack", fixture_project, "--entrypoint", "python", "-o", tmp_path / "e.tar", "-q"
    )
    assert_one_error_line(result, "--create-executable")
    assert not (tmp_path / "e.tar").exists()


def test_missing_launcher_says_how_to_build_it(fixture_project: Path, tmp_path: Path) -> None:
    lone = build_stub_unpacker(tmp_path / "lone")
    result = run_cli(
        "envpack",
        fixture_project,
        "--create-executable",
        "--unpacker",
        lone,
        "--entrypoint",
        "python",
        "-o",
        tmp_path / "app.run",
        env={"ENVPACK_UNPACKER_DIR": str(tmp_path / "nowhere")},
        cwd=tmp_path,
    )
    assert_one_error_line(result, "scripts/build-launcher")
    assert not (tmp_path / "app.run").exists()


def test_aarch64_launcher_reads_its_own_file(
    fixture_project: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The aarch64 launcher's start-up and syscalls, under qemu-user where binfmt has it."""
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        pytest.skip("no qemu-aarch64 binfmt handler (scripts/test installs qemu-user-static)")
    tools = tmp_path_factory.mktemp("arm-tools")
    build_stub_unpacker(tools, "aarch64")
    subprocess.run(
        [ROOT / "scripts" / "build-launcher", "--arch", "aarch64", "--out", tools], check=True
    )
    out = tmp_path / "arm.run"
    result = _pack(
        fixture_project, tools, out, "-p", "linux-aarch64", "--entrypoint", "python", arch="aarch64"
    )
    assert result.returncode == 0, result.stderr.decode()
    payload = selfextract.find_payload(out)
    assert payload is not None
    info = subprocess.run(
        [out, "--envpack-info"],
        capture_output=True,
        text=True,
        env={"ENVPACK_APP_HOME": str(tmp_path / "apps")},
        check=False,
    )
    assert info.returncode == 0, info.stderr
    assert f"payload sha256: {payload.sha256.hex()}" in info.stdout
    assert f"install dir:    {tmp_path / 'apps' / payload.sha256.hex()}" in info.stdout
    assert "installed:      no" in info.stdout and "entrypoint:     python" in info.stdout
    assert not (tmp_path / "apps").exists()  # --envpack-info writes nothing

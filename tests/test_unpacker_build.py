"""The frozen `envunpack`: what it may import, how its lazy rattler works, and the binary itself.

The import tests run in the plain venv. The `slow` tests use dist/envunpack-<arch>-linux,
built (or taken from the cache) by scripts/build-unpacker; the aarch64 one is only used if it
is already there, or built when ENVPACK_BUILD_AARCH64=1, since emulation takes minutes.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from envpack import __version__

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "freeze" / "envunpack_entry.py"

# Modules only the packer needs: none may load in the unpacker, or the frozen binary would
# carry them (and their start-up cost) or fail on a missing import. The one list is
# pyproject.toml's ruff banned-api table; the SBOM library's own dependencies follow it.
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
BANNED_API = PYPROJECT["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-api"]
BANNED = (*sorted(BANNED_API), "license_expression", "py_serializable", "requests")
# Everything the unpacker can run: every module of envpack.target and envpack.core.
UNPACKER_MODULES = tuple(
    f"envpack.{part}.{path.stem}"
    for part in ("target", "core")
    for path in sorted((ROOT / "src" / "envpack" / part).glob("*.py"))
    if path.stem != "__init__"
)
# What `--help` and `--version` must not pay for: rattler alone is a 55 MB extension.
HEAVY = ("rattler", "zstandard", "tqdm", "installer", "envpack.target.install")


def loaded_modules(*modules: str) -> set[str]:
    """sys.modules of a fresh interpreter after importing `modules`, as the frozen entry does."""
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(*sys.modules)"
    # The frozen entry switches typer's rich support off before importing anything.
    env = {**os.environ, "TYPER_USE_RICH": "0"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return set(result.stdout.split())


def _banned(module: str) -> bool:
    return any(module == ban or module.startswith(ban + ".") for ban in BANNED)


def test_unpacker_imports_no_packer_only_module() -> None:
    loaded = loaded_modules(*UNPACKER_MODULES)
    assert "envpack.target.unpack_cli" in loaded
    banned = sorted(m for m in loaded if _banned(m))
    assert banned == [], f"the unpacker imports packer-only modules: {banned}"


def test_the_packer_boundary_is_one_ban_on_one_subpackage() -> None:
    """pyproject.toml bans envpack.packer as a whole, and only its own files are exempt."""
    assert sorted(m for m in BANNED_API if m.startswith("envpack")) == ["envpack.packer"]
    ignores = PYPROJECT["tool"]["ruff"]["lint"]["per-file-ignores"]
    exempt = sorted(k for k, v in ignores.items() if k.startswith("src/") and "TID251" in v)
    assert exempt == ["src/envpack/packer/**"]
    flat = sorted(p.name for p in (ROOT / "src" / "envpack").glob("*.py"))
    assert flat == ["__init__.py"], "every module lives in core/, packer/ or target/"


def test_cli_module_loads_nothing_heavy() -> None:
    loaded = loaded_modules("envpack.target.unpack_cli")
    heavy = sorted(m for m in HEAVY if m in loaded)
    assert heavy == [], f"import these inside the command, not at module level: {heavy}"


def load_entry() -> ModuleType:
    spec = importlib.util.spec_from_file_location("envunpack_entry", ENTRY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"LD_LIBRARY_PATH": "/tmp/_MEI1", "A": "1"}, {"A": "1"}),
        (
            {"LD_LIBRARY_PATH": "/tmp/_MEI1", "LD_LIBRARY_PATH_ORIG": "/opt/lib"},
            {"LD_LIBRARY_PATH": "/opt/lib"},
        ),
        ({}, {}),
    ],
)
def test_children_get_the_users_library_path(before: dict[str, str], after: dict[str, str]) -> None:
    environ = dict(before)
    load_entry().restore_child_environment(environ)
    assert environ == after


@pytest.mark.slow
@pytest.mark.parametrize("argv", [[], ["--version"]], ids=["ahead", "on-import"])
def test_lazy_rattler_extension_is_decompressed_on_first_import(
    tmp_path: Path, argv: list[str]
) -> None:
    """The finder the frozen entry installs, run against a fake bundle of the real rattler:
    decompressed by a thread from the start for a command that will import rattler, only
    on the import itself for --version."""
    import rattler
    import zstandard

    bundle = tmp_path / "bundle"
    package = Path(rattler.__file__).parent
    shutil.copytree(package, bundle / "rattler", ignore=shutil.ignore_patterns("*.so"))
    (extension,) = package.glob("rattler*.so")
    with (
        extension.open("rb") as src,
        (bundle / "rattler" / "rattler.abi3.so.zst").open("wb") as dst,
    ):
        zstandard.ZstdCompressor(level=1).copy_stream(src, dst)
    code = textwrap.dedent(
        f"""
        import importlib.util, sys, time
        from pathlib import Path
        sys._MEIPASS = {str(bundle)!r}
        sys.path.insert(0, sys._MEIPASS)
        spec = importlib.util.spec_from_file_location("entry", {str(ENTRY)!r})
        entry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(entry)
        entry.install_lazy_extension({argv!r})
        so = Path(sys._MEIPASS) / "rattler" / "rattler.abi3.so"
        deadline = time.monotonic() + (30 if {argv!r} == [] else 1)
        while not so.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        print(so.exists())
        import rattler, rattler.rattler
        print(rattler.rattler.__file__)
        print(rattler.Version("1.2") < rattler.Version("1.10"))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(argv == [])  # there before any import only when decompressed ahead
    assert lines[1] == str(bundle / "rattler" / "rattler.abi3.so")
    assert lines[2] == "True"
    assert not list((bundle / "rattler").glob("*.part"))


# --- the frozen binary -----------------------------------------------------------------------

HOST_ARCH = platform.machine()
SUBDIRS = {"x86_64": "linux-64", "aarch64": "linux-aarch64"}


def frozen_unpacker(arch: str) -> Path:
    """dist/envunpack-<arch>-linux, brought up to date by the (cached) build script."""
    binary = ROOT / "dist" / f"envunpack-{arch}-linux"
    native = arch == HOST_ARCH
    if native or os.environ.get(f"ENVPACK_BUILD_{arch.upper()}") == "1":
        subprocess.run([ROOT / "scripts" / "build-unpacker", "--arch", arch], check=True)
    elif not binary.exists():
        pytest.skip(f"{binary.name} not built (scripts/build-unpacker --arch {arch})")
    return binary


@pytest.fixture(scope="module")
def unpacker() -> Path:
    return frozen_unpacker(HOST_ARCH)


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
def test_version_names_the_build_platform(unpacker: Path) -> None:
    result = run(unpacker, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"envunpack {__version__} ({SUBDIRS[HOST_ARCH]}, static)"


@pytest.mark.slow
def test_help(unpacker: Path) -> None:
    result = run(unpacker, "--help")
    assert result.returncode == 0, result.stderr
    assert re.match(r"Usage: envunpack \[OPTIONS\] \[?ARCHIVE", result.stdout)
    assert "--output-directory" in result.stdout


@pytest.mark.slow
def test_binary_is_static_with_checksum(unpacker: Path) -> None:
    assert unpacker.stat().st_mode & 0o777 == 0o755
    out = subprocess.run(["file", "-L", unpacker], capture_output=True, text=True).stdout
    assert "statically linked" in out, out
    checksum = unpacker.with_name(unpacker.name + ".sha256").read_text()
    assert checksum.split() == [sha256(unpacker), unpacker.name]


def sha256(path: Path) -> str:
    import hashlib

    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@pytest.mark.slow
@pytest.mark.container
def test_starts_on_an_empty_root(unpacker: Path, tmp_path: Path) -> None:
    """Only /dev, /proc and a writable /tmp: no libc, no CA certificates, no shell."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    empty = tmp_path / "root"
    empty.mkdir()
    base: list[str | Path] = ["bwrap", "--bind", empty, "/", "--dev", "/dev", "--proc", "/proc"]
    base += [
        "--tmpfs",
        "/tmp",
        "--ro-bind",
        unpacker,
        "/envunpack",
        "--unshare-all",
        "--die-with-parent",
    ]
    base += ["--clearenv"]
    version = run(*base, "/envunpack", "--version")
    assert version.returncode == 0, version.stderr
    assert "static" in version.stdout
    # A missing archive goes through rattler's import (lazy extension, CA check) and ends in
    # the one-line error, not a panic.
    missing = run(*base, "/envunpack", "/nothing.tar", "-o", "/tmp/app")
    assert missing.returncode == 1, missing.stderr
    assert missing.stderr.strip() == "error: no such archive: /nothing.tar"


# End-to-end runs on bare Debian targets live in tests/containers/test_envunpack_targets.py.


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.slow
def test_frozen_sbom_listing_needs_no_sbom_library(unpacker: Path, tmp_path: Path) -> None:
    """An envpack archive's SBOM is only checked against the manifest: no cyclonedx needed."""
    import hashlib
    import json

    sbom = b'{"bomFormat": "CycloneDX", "specVersion": "1.6"}\n'
    manifest = {
        "format_version": 2,
        "envpack_version": __version__,
        "platform": SUBDIRS[HOST_ARCH],
        "environment": "default",
        "lock_sha256": "0" * 64,
        "artifacts": [],
        "sbom": {
            "path": "sbom.cdx.json",
            "sha256": hashlib.sha256(sbom).hexdigest(),
            "size": len(sbom),
        },
    }
    archive = _tar(
        tmp_path / "env.tar",
        {"envpack.json": json.dumps(manifest).encode(), "sbom.cdx.json": sbom},
    )
    result = subprocess.run(
        [unpacker, "--list", "--sbom", archive], capture_output=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == sbom


@pytest.mark.slow
def test_frozen_pixi_pack_sbom_says_to_use_the_pip_installed_envunpack(
    unpacker: Path, tmp_path: Path
) -> None:
    """Making an SBOM needs cyclonedx, which the frozen build leaves out: one error line."""
    meta = b'{"version": "1", "platform": "%s"}' % SUBDIRS[HOST_ARCH].encode()
    archive = _tar(tmp_path / "pixi.tar", {"pixi-pack.json": meta})
    result = run(unpacker, "--list", "--sbom", archive)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "pip-installed envunpack" in lines[0]
    assert result.stdout == ""


# --- issue 14 in the frozen build: the same look, signals, cut self-extracting files ---------


@pytest.mark.slow
def test_frozen_help_is_the_venv_help(unpacker: Path) -> None:
    """One look for both builds: plain click help, the same text."""
    env = {**os.environ, "COLUMNS": "80"}
    frozen = subprocess.run([unpacker, "--help"], capture_output=True, text=True, env=env)
    venv = subprocess.run(
        [Path(sys.executable).parent / "envunpack", "--help"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert frozen.returncode == venv.returncode == 0
    assert frozen.stdout == venv.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_frozen_signal_mid_unpack_leaves_no_staging(
    unpacker: Path, archives: dict[str, Path], tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """`docker stop` sends SIGTERM to the outer (staticx) process: the inner one cleans up."""
    from tests.clirun import interrupt_mid_pipe

    out = tmp_path / "app"
    assert interrupt_mid_pipe(unpacker, archives["none"], out, sig) == (code, "error: interrupted")
    assert not out.exists()


@pytest.mark.slow
def test_frozen_cut_self_extracting_file_says_how_long_it_should_be(
    unpacker: Path, archives: dict[str, Path], tmp_path: Path
) -> None:
    from tests.clirun import run_cli

    run_file = tmp_path / "env.run"
    packed = run_cli(
        "envpack",
        archives["project"],
        "-o",
        run_file,
        "--create-executable",
        "--unpacker",
        unpacker,
        "-q",
        "--cache",
        archives["zstd"].parent / "cache",
    )
    assert packed.returncode == 0, packed.stderr.decode()
    whole = run_file.stat().st_size
    help_text = run(run_file, "--help").stdout
    assert "carries its archive built in" in help_text and "./env.run -o DIR" in help_text
    keep = unpacker.stat().st_size + (whole - unpacker.stat().st_size) // 2
    cut = tmp_path / "cut.run"
    cut.write_bytes(run_file.read_bytes()[:keep])
    cut.chmod(0o755)
    result = run(cut, "-o", tmp_path / "dest")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    expected = f"cut.run is truncated: it has {keep} bytes, a complete file has {whole}"
    assert last == f"error: {expected}; copy it again"
    assert not (tmp_path / "dest").exists()

"""envpack.target.wheels: tags from the python record, and offline installs with pypa installer.

Offline tests use a real wheel built in tmp by `pip wheel` from a tiny setuptools project;
the hostile ones are that wheel rewritten with a consistent RECORD, as an attacker would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest
import rattler
from hypothesis import given
from hypothesis import strategies as st
from packaging.tags import Tag

from devtools import wheelbuild
from devtools.wheelbuild import DIST, WHEEL_NAME
from envpack.core.errors import EnvpackError, WheelError
from envpack.core.progress import SilentReporter
from envpack.core.wheeltags import (
    DEFAULT_GLIBC,
    PythonInfo,
    check_wheels_compatible,
    platform_tags,
    python_info,
    python_info_from_fields,
    supported_tags,
)
from envpack.target.wheels import check_member_names, install_wheels, verify_wheel

PY311 = python_info_from_fields({"version": "3.11.9", "build": "h1234_0_cpython"})
# --- building real wheels ----------------------------------------------------------------------


def build_wheel(out_dir: Path) -> Path:
    """devtools' tiny wheel, or a skip where no interpreter can build one."""
    if wheelbuild.wheel_capable_python() is None:
        pytest.skip("no interpreter with pip, setuptools and wheel to build a test wheel")
    return wheelbuild.build_wheel(out_dir)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def rewrite_wheel(
    src: Path,
    dest: Path,
    *,
    replace: Mapping[str, bytes] | None = None,
    add: Mapping[str, bytes] | None = None,
    fix_record: bool = True,
    extra_record: tuple[str, ...] = (),
) -> Path:
    """Copy a wheel, changing members; RECORD is rewritten to match unless fix_record=False."""
    record_name = f"{DIST}.dist-info/RECORD"
    replace, add = dict(replace or {}), dict(add or {})
    with zipfile.ZipFile(src) as zin:
        members = {name: zin.read(name) for name in zin.namelist()}
    old_record = members.pop(record_name)
    members.update(replace)
    members.update(add)
    if fix_record:
        lines = [f"{n},{_record_hash(d)},{len(d)}" for n, d in members.items()]
        lines += [*extra_record, f"{record_name},,"]
        record = ("\n".join(lines) + "\n").encode()
    else:
        record = old_record
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w") as zout:
        for name, data in members.items():
            zout.writestr(zipfile.ZipInfo(name), data)
        zout.writestr(zipfile.ZipInfo(record_name), record)
    return dest


@pytest.fixture(scope="session")
def hello_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def _install(staging: Path, final: Path, *wheels: Path) -> int:
    return install_wheels(
        staging, final, {f"pypi/{w.name}": w for w in wheels}, PY311, SilentReporter()
    )


def _files(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


# --- the python record -------------------------------------------------------------------------


def _record(name: str, version: str, build: str, **extra: object) -> rattler.RepoDataRecord:
    package = rattler.PackageRecord(
        name=name,
        version=version,
        build=rattler.BuildString.new_unchecked(build),
        build_number=0,
        subdir="linux-64",
        **extra,  # type: ignore[arg-type]
    )
    return rattler.RepoDataRecord(
        package, f"{name}-{version}-{build}.conda", "file:///x.conda", "file:///c"
    )


def test_python_info_from_records() -> None:
    records = [_record("zlib", "1.3", "h0"), _record("python", "3.11.9", "h0_cpython")]
    info = python_info(records)
    assert info == PythonInfo(
        version=(3, 11),
        site_packages="lib/python3.11/site-packages",
        interpreter="bin/python3.11",
    )
    assert info.abi == "cp311"
    assert info.label == "CPython 3.11"


def test_python_info_honours_site_packages_path() -> None:
    record = _record(
        "python", "3.13.1", "h0_cp313", python_site_packages_path="lib/python3.13/site-packages"
    )
    assert python_info([record]).site_packages == "lib/python3.13/site-packages"


def test_python_info_free_threaded() -> None:
    info = python_info_from_fields(
        {"version": "3.13.1", "build": "h0_0_cp313t", "depends": ["python_abi 3.13.* *_cp313t"]}
    )
    assert info.free_threaded
    assert info.abi == "cp313t"
    assert info.site_packages == "lib/python3.13t/site-packages"
    assert info.interpreter == "bin/python3.13t"
    tags = supported_tags(info, "linux-64", "2.28")
    assert Tag("cp313", "cp313t", "manylinux_2_17_x86_64") in tags
    assert Tag("cp313", "cp313", "manylinux_2_17_x86_64") not in tags


def test_python_info_from_prefix(tmp_path: Path) -> None:
    meta = tmp_path / "conda-meta"
    meta.mkdir()
    (meta / "python-3.12.1-h0_cpython.json").write_text(
        json.dumps({"name": "python", "version": "3.12.1", "build": "h0_cpython", "depends": []})
    )
    (meta / "python-dateutil-2.9.0-py_0.json").write_text(
        json.dumps({"name": "python-dateutil", "version": "2.9.0", "build": "py_0"})
    )
    assert python_info(tmp_path).version == (3, 12)


def test_no_python_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(WheelError, match="no python package"):
        python_info([_record("zlib", "1.3", "h0")])
    with pytest.raises(WheelError, match="no python package"):
        python_info(tmp_path)


def test_unsafe_site_packages_path_refused() -> None:
    with pytest.raises(WheelError, match="unsafe"):
        python_info_from_fields(
            {"version": "3.11.0", "build": "h0", "python_site_packages_path": "../../etc"}
        )


def test_wheel_error_is_an_envpack_error() -> None:
    assert issubclass(WheelError, EnvpackError)


# --- tags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        "cp311-cp311-manylinux_2_17_x86_64",
        "cp311-cp311-manylinux2014_x86_64",
        "cp311-cp311-manylinux1_x86_64",
        "cp311-cp311-manylinux_2_28_x86_64",
        "cp311-abi3-manylinux_2_17_x86_64",
        "cp38-abi3-manylinux2014_x86_64",
        "cp311-none-linux_x86_64",
        "py3-none-manylinux_2_17_x86_64",
        "py3-none-any",
        "py311-none-any",
        "cp311-none-any",
    ],
)
def test_supported_on_linux_64(tag: str) -> None:
    assert Tag(*tag.split("-")) in supported_tags(PY311, "linux-64", "2.28")


@pytest.mark.parametrize(
    "tag",
    [
        "cp312-cp312-manylinux_2_17_x86_64",
        "cp310-cp310-manylinux_2_17_x86_64",
        "cp311-cp311-manylinux_2_29_x86_64",
        "cp311-cp311-manylinux_2_17_aarch64",
        "cp311-cp311-musllinux_1_2_x86_64",
        "cp311-cp311-macosx_11_0_arm64",
        "cp311-cp311-win_amd64",
        "pp311-pypy311_pp73-manylinux_2_17_x86_64",
        "py2-none-any",
    ],
)
def test_unsupported_on_linux_64(tag: str) -> None:
    assert Tag(*tag.split("-")) not in supported_tags(PY311, "linux-64", "2.28")


def test_glibc_widens_manylinux() -> None:
    tag = Tag("cp311", "cp311", "manylinux_2_34_x86_64")
    assert tag not in supported_tags(PY311, "linux-64", None)  # the default is 2.28
    assert tag in supported_tags(PY311, "linux-64", "2.36")


def test_aarch64_has_no_pre_2014_manylinux() -> None:
    tags = platform_tags("linux-aarch64", "2.28")
    assert tags[0] == "manylinux_2_28_aarch64"
    assert "manylinux2014_aarch64" in tags
    assert "manylinux_2_16_aarch64" not in tags
    assert tags[-1] == "linux_aarch64"


def test_osx_and_windows_platforms() -> None:
    assert "macosx_11_0_arm64" in platform_tags("osx-arm64", None, macos="13.0")
    assert "macosx_14_0_arm64" not in platform_tags("osx-arm64", None, macos="13.0")
    assert platform_tags("win-64", None) == ["win_amd64"]
    with pytest.raises(WheelError, match="not supported for platform"):
        platform_tags("emscripten-wasm32", None)


def test_default_glibc_is_pixis() -> None:
    assert DEFAULT_GLIBC == "2.28"


@pytest.mark.parametrize(
    ("filename", "reason"),
    [
        (
            "numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.whl",
            "built for cp312-cp312, not CPython 3.11",
        ),
        (
            "numpy-2.0.0-cp311-cp311-manylinux_2_99_x86_64.whl",
            "needs glibc 2.99, the target has 2.28",
        ),
        (
            "numpy-2.0.0-cp311-cp311-macosx_11_0_arm64.whl",
            "built for macosx_11_0_arm64, not linux-64",
        ),
        ("numpy-2.0.0-cp311-cp311-manylinux_2_17_aarch64.whl", "not linux-64"),
    ],
)
def test_incompatible_wheel_named(filename: str, reason: str) -> None:
    with pytest.raises(WheelError) as info:
        check_wheels_compatible([filename], PY311, "linux-64", "2.28")
    message = str(info.value)
    assert filename in message
    assert reason in message
    assert "CPython 3.11 on linux-64 with glibc 2.28" in message


def test_all_offenders_in_one_error() -> None:
    names = [
        "a-1.0-cp312-cp312-manylinux_2_17_x86_64.whl",
        "b-1.0-py3-none-any.whl",
        "c-1.0-cp311-cp311-win_amd64.whl",
    ]
    with pytest.raises(WheelError) as info:
        check_wheels_compatible(names, PY311, "linux-64", None)
    assert "a-1.0" in str(info.value)
    assert "c-1.0" in str(info.value)
    assert "b-1.0" not in str(info.value)


def test_compatible_wheels_pass() -> None:
    check_wheels_compatible(
        ["numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"],
        PY311,
        "linux-64",
        "2.17",
    )
    check_wheels_compatible([WHEEL_NAME], PY311, "linux-aarch64", None)


def test_bad_wheel_filename() -> None:
    with pytest.raises(WheelError, match="not a valid wheel file name"):
        check_wheels_compatible(["numpy.whl"], PY311, "linux-64", None)


# --- member names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../x.py", "pkg/../../x.py", "/etc/passwd", "C:/x", "pkg\\..\\x", "a//b", "a/./b", "a\x00b"],
)
def test_unsafe_member_names(name: str) -> None:
    with pytest.raises(WheelError, match="unsafe path"):
        check_member_names([name], "w.whl")


_SEGMENT = st.text(
    alphabet=st.characters(blacklist_characters="/\\\x00", blacklist_categories=["Cs"]),
    min_size=1,
    max_size=8,
).filter(lambda s: s not in (".", "..") and not (len(s) >= 2 and s[1] == ":"))


@given(st.lists(_SEGMENT, min_size=1, max_size=5), st.integers(min_value=0, max_value=5))
def test_dotdot_anywhere_is_refused(parts: list[str], where: int) -> None:
    check_member_names(["/".join(parts)], "w.whl")  # ordinary segments are fine
    escaped = [*parts[: where % len(parts)], "..", *parts[where % len(parts) :]]
    with pytest.raises(WheelError):
        check_member_names(["/".join(escaped)], "w.whl")


# --- installing ------------------------------------------------------------------------------


def test_install_layout_record_and_installer(hello_wheel: Path, tmp_path: Path) -> None:
    staging, final = tmp_path / "staging", tmp_path / "final env"
    assert _install(staging, final, hello_wheel) == 1
    sp = "lib/python3.11/site-packages"
    assert _files(staging) == {
        f"{sp}/hello_envpack/__init__.py",
        f"{sp}/hello_envpack/data.txt",
        f"{sp}/{DIST}.dist-info/METADATA",
        f"{sp}/{DIST}.dist-info/WHEEL",
        f"{sp}/{DIST}.dist-info/entry_points.txt",
        f"{sp}/{DIST}.dist-info/top_level.txt",
        f"{sp}/{DIST}.dist-info/RECORD",
        f"{sp}/{DIST}.dist-info/INSTALLER",
        "bin/hello-envpack",
        "bin/hello-raw",
        "share/hello-envpack/readme.txt",
    }
    dist_info = staging / sp / f"{DIST}.dist-info"
    assert (dist_info / "INSTALLER").read_text() == "envpack\n"
    record = (dist_info / "RECORD").read_text().splitlines()
    recorded = {line.split(",")[0] for line in record}
    # Paths outside site-packages are relative to it, as pip writes them.
    assert "../../../bin/hello-envpack" in recorded
    assert "../../../share/hello-envpack/readme.txt" in recorded
    assert f"{DIST}.dist-info/INSTALLER" in recorded
    assert all(line.split(",")[1].startswith("sha256=") for line in record if "RECORD," not in line)
    assert not (staging / "conda-meta").exists()


def test_scripts_name_the_final_python(hello_wheel: Path, tmp_path: Path) -> None:
    staging, final = tmp_path / "staging", tmp_path / "final"
    _install(staging, final, hello_wheel)
    for script in ("hello-envpack", "hello-raw"):
        path = staging / "bin" / script
        assert path.read_text().splitlines()[0] == f"#!{final}/bin/python3.11"
        assert os.access(path, os.X_OK)
    assert str(staging) not in (staging / "bin" / "hello-envpack").read_text()


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the test wheel's env is python 3.11")
def test_console_script_runs_after_the_move(hello_wheel: Path, tmp_path: Path) -> None:
    # A long path with a space: installer falls back to its /bin/sh exec trick.
    staging, final = tmp_path / "staging", tmp_path / ("final with space" + "x" * 120)
    _install(staging, final, hello_wheel)
    staging.rename(final)  # as install.py does
    (final / "bin" / "python3.11").symlink_to(sys.executable)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(final / PY311.site_packages)}
    for script, expected in (("hello-envpack", "hello from envpack"), ("hello-raw", "raw script")):
        result = subprocess.run(
            [str(final / "bin" / script)], capture_output=True, text=True, env=env, check=False
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected


def test_verify_wheel_accepts_a_good_wheel(hello_wheel: Path) -> None:
    verify_wheel(hello_wheel)


def test_tampered_wheel_refused(hello_wheel: Path, tmp_path: Path) -> None:
    bad = rewrite_wheel(
        hello_wheel,
        tmp_path / "bad" / WHEEL_NAME,
        replace={"hello_envpack/__init__.py": b"import os; os.system('evil')\n"},
        fix_record=False,
    )
    staging = tmp_path / "staging"
    with pytest.raises(WheelError, match=r"cannot install .*didn't match RECORD"):
        _install(staging, tmp_path / "final", bad)
    assert _files(staging) == set()  # checked before anything was written
    with pytest.raises(WheelError, match="didn't match RECORD"):
        verify_wheel(bad)


def test_member_missing_from_record_refused(hello_wheel: Path, tmp_path: Path) -> None:
    good = rewrite_wheel(
        hello_wheel, tmp_path / "a" / WHEEL_NAME, add={"hello_envpack/extra.py": b"x = 1\n"}
    )
    verify_wheel(good)
    # Same members, but RECORD from the original: extra.py is not in it.
    bad = tmp_path / "b" / WHEEL_NAME
    bad.parent.mkdir()
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("RECORD"):
                data = zipfile.ZipFile(hello_wheel).read(name)
            zout.writestr(name, data)
    with pytest.raises(WheelError, match="not mentioned in RECORD"):
        _install(tmp_path / "staging", tmp_path / "final", bad)


@pytest.mark.parametrize(
    "member",
    [
        "../escape.py",
        "hello_envpack/../../../../escape.py",
        "/tmp/escape.py",
        f"{DIST}.data/data/../../../escape.py",
        f"{DIST}.data/scripts/../../escape",
    ],
)
def test_escaping_member_refused(hello_wheel: Path, tmp_path: Path, member: str) -> None:
    bad = rewrite_wheel(hello_wheel, tmp_path / "bad" / WHEEL_NAME, add={member: b"pwned\n"})
    staging = tmp_path / "deep" / "staging"
    with pytest.raises(WheelError, match="unsafe path"):
        _install(staging, tmp_path / "final", bad)
    assert _files(tmp_path / "deep") == set()
    assert not (tmp_path / "escape.py").exists()


def test_escaping_record_entry_refused(hello_wheel: Path, tmp_path: Path) -> None:
    bad = rewrite_wheel(
        hello_wheel, tmp_path / "bad" / WHEEL_NAME, extra_record=("../../etc/passwd,,",)
    )
    with pytest.raises(WheelError, match=r"RECORD: unsafe path '../../etc/passwd'"):
        _install(tmp_path / "staging", tmp_path / "final", bad)


def test_data_into_conda_meta_refused(hello_wheel: Path, tmp_path: Path) -> None:
    bad = rewrite_wheel(
        hello_wheel,
        tmp_path / "bad" / WHEEL_NAME,
        add={f"{DIST}.data/data/conda-meta/fake-1.0-0.json": b"{}"},
    )
    with pytest.raises(WheelError, match="conda-meta"):
        _install(tmp_path / "staging", tmp_path / "final", bad)


def test_symlink_out_of_prefix_refused(hello_wheel: Path, tmp_path: Path) -> None:
    staging, outside = tmp_path / "staging", tmp_path / "outside"
    outside.mkdir()
    sp = staging / PY311.site_packages
    sp.mkdir(parents=True)
    (sp / "hello_envpack").symlink_to(outside)
    with pytest.raises(WheelError, match="resolves outside the environment"):
        _install(staging, tmp_path / "final", hello_wheel)
    assert list(outside.iterdir()) == []


def test_existing_file_not_clobbered(hello_wheel: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    target = staging / PY311.site_packages / "hello_envpack" / "__init__.py"
    target.parent.mkdir(parents=True)
    target.write_text("from conda\n")
    with pytest.raises(WheelError, match=r"would overwrite .*hello_envpack/__init__.py"):
        _install(staging, tmp_path / "final", hello_wheel)
    assert target.read_text() == "from conda\n"


def test_not_a_zip_refused(tmp_path: Path) -> None:
    bad = tmp_path / WHEEL_NAME
    bad.write_bytes(b"not a zip")
    with pytest.raises(WheelError, match=f"cannot install {WHEEL_NAME}"):
        _install(tmp_path / "staging", tmp_path / "final", bad)


def test_wrong_dist_info_refused(hello_wheel: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "other_name-1.0-py3-none-any.whl"
    shutil.copy(hello_wheel, renamed)
    with pytest.raises(WheelError, match="dist-info"):
        _install(tmp_path / "staging", tmp_path / "final", renamed)


# --- real wheels from PyPI ---------------------------------------------------------------------

NUMPY = "numpy==2.2.6"  # has cp311 manylinux_2_17 x86_64 wheels
PURE = "tabulate==0.9.0"  # pure python, console script `tabulate`


def _download(spec: str, dest: Path, *platform_args: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    name = spec.split("==")[0]
    found = sorted(dest.glob(f"{name}-*.whl"))
    if not found:
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"),
                *("--disable-pip-version-check", "-q", "-d", str(dest), *platform_args, spec),
            ],
            check=True,
            capture_output=True,
        )
        found = sorted(dest.glob(f"{name}-*.whl"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="session")
def pypi_wheels() -> tuple[Path, Path]:
    cache = Path(os.environ.get("ENVPACK_DEV_CACHE", Path.home() / ".cache" / "envpack-dev"))
    dest = cache / "pypi-wheels"
    numpy = _download(
        NUMPY,
        dest,
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "--platform",
        "manylinux2014_x86_64",
    )
    return numpy, _download(PURE, dest)


@pytest.mark.network
def test_real_wheels_install(pypi_wheels: tuple[Path, Path], tmp_path: Path) -> None:
    numpy, pure = pypi_wheels
    for wheel in (numpy, pure):
        check_wheels_compatible([wheel.name], PY311, "linux-64", "2.17")
        verify_wheel(wheel)
    staging, final = tmp_path / "staging", tmp_path / "final"
    started = time.perf_counter()
    assert _install(staging, final, numpy, pure) == 2
    elapsed = time.perf_counter() - started
    sp = staging / PY311.site_packages
    assert (sp / "numpy" / "__init__.py").is_file()
    assert any((sp / "numpy" / "_core").glob("_multiarray_umath.cpython-311-x86_64-linux-gnu.so"))
    assert (sp / "numpy.libs").is_dir()
    assert (staging / "bin" / "tabulate").read_text().startswith(f"#!{final}/bin/python3.11\n")
    assert (staging / "bin" / "f2py").read_text().startswith(f"#!{final}/bin/python3.11\n")
    assert elapsed < 120  # a sanity bound, not a benchmark (scripts/bench measures)

    if sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64":
        return  # the rest runs the wheels with this host's python as the env's
    staging.rename(final)
    (final / "bin" / "python3.11").symlink_to(sys.executable)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(final / PY311.site_packages)}
    result = subprocess.run(
        [str(final / "bin" / "python3.11"), "-c", "import numpy; print(numpy.arange(3).sum())"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.stdout.strip() == "3", result.stderr
    result = subprocess.run(
        [str(final / "bin" / "tabulate"), "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: tabulate" in result.stdout


@pytest.mark.network
def test_real_numpy_refused_for_other_pythons(pypi_wheels: tuple[Path, Path]) -> None:
    numpy, _ = pypi_wheels
    py312 = python_info_from_fields({"version": "3.12.1", "build": "h0_cpython"})
    with pytest.raises(WheelError, match=r"not CPython 3\.12"):
        check_wheels_compatible([numpy.name], py312, "linux-64", "2.28")
    with pytest.raises(WheelError, match="not linux-aarch64"):
        check_wheels_compatible([numpy.name], PY311, "linux-aarch64", "2.28")


def test_unpack_side_imports_no_packer_code() -> None:
    # The frozen envunpack bundles envpack.target.wheels; packer-only modules must stay out of it.
    code = (
        "import sys, envpack.target.wheels; "
        "bad = [m for m in sys.modules if m == 'urllib3' or m.startswith('envpack.packer')]; "
        "print(bad)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

"""envpack.packer.wheelcheck: pack-time tag checks of a plan's wheels, and `--inject x.whl`."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from devtools.wheelbuild import WHEEL_NAME
from envpack.core.errors import WheelError
from envpack.core.models import Artifact, Download, Plan
from envpack.packer.lockfile import plan_lock
from envpack.packer.wheelcheck import check_plan_wheels, injected_wheel, plan_python, target_version
from tests.conftest import real_shared_dir
from tests.test_wheels import build_wheel, rewrite_wheel

NUMPY_312 = "numpy-1.26.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


def _python(version: str = "3.11.9", build: str = "h1234_0_cpython", **record: object) -> Download:
    artifact = Artifact(
        kind="conda",
        name="python",
        version=version,
        build=build,
        filename=f"python-{version}-{build}.conda",
        subdir="linux-64",
    )
    fields: dict[str, object] = {"name": "python", "version": version, "build": build, **record}
    return Download(artifact=artifact, url="https://example.invalid/python.conda", record=fields)


def _wheel(filename: str) -> Download:
    name, version = filename.split("-")[:2]
    artifact = Artifact(kind="wheel", name=name, version=version, filename=filename)
    return Download(artifact=artifact, url=f"https://example.invalid/{filename}")


def _plan(*downloads: Download, platform: str = "linux-64", virtual: tuple[str, ...] = ()) -> Plan:
    return Plan(
        environment="default",
        platform=platform,
        lock_sha256="0" * 64,
        virtual_packages=virtual,
        downloads=tuple(downloads),
    )


# --- check_plan_wheels -----------------------------------------------------------------------


def test_no_wheels_needs_no_python() -> None:
    check_plan_wheels(_plan())


def test_compatible_wheels_pass() -> None:
    check_plan_wheels(
        _plan(
            _python(),
            _wheel("six-1.16.0-py2.py3-none-any.whl"),
            _wheel("numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            _wheel("cryptography-46.0.3-cp311-abi3-manylinux_2_28_x86_64.whl"),
        )
    )


def test_wheels_without_python_refused() -> None:
    with pytest.raises(WheelError, match="has PyPI wheels but no python package"):
        check_plan_wheels(_plan(_wheel("six-1.16.0-py2.py3-none-any.whl")))


def test_incompatible_wheels_listed() -> None:
    plan = _plan(
        _python(),
        _wheel(NUMPY_312),
        _wheel("pydantic_core-2.0-cp311-cp311-macosx_11_0_arm64.whl"),
        _wheel("six-1.16.0-py2.py3-none-any.whl"),
    )
    with pytest.raises(WheelError) as info:
        check_plan_wheels(plan)
    message = str(info.value)
    assert NUMPY_312 in message
    assert "pydantic_core-2.0-cp311-cp311-macosx_11_0_arm64.whl" in message
    assert "six" not in message
    assert "CPython 3.11 on linux-64" in message


def test_glibc_from_the_plan() -> None:
    wheel = _wheel("fast-1.0-cp311-cp311-manylinux_2_34_x86_64.whl")
    with pytest.raises(WheelError, match=r"needs glibc 2\.34, the target has 2\.28"):
        check_plan_wheels(_plan(_python(), wheel, virtual=("__glibc >=2.17,<3.0.a0",)))
    check_plan_wheels(_plan(_python(), wheel, virtual=("__glibc >=2.34",)))


def test_platform_from_the_plan() -> None:
    wheel = _wheel("numpy-2.2.6-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")
    check_plan_wheels(_plan(_python(), wheel, platform="linux-aarch64"))
    with pytest.raises(WheelError, match="not linux-64"):
        check_plan_wheels(_plan(_python(), wheel))


def test_free_threaded_python_from_the_record() -> None:
    python = _python("3.13.1", "h0_0_cp313t", depends=["python_abi 3.13.* *_cp313t"])
    check_plan_wheels(_plan(python, _wheel("x-1.0-cp313-cp313t-manylinux_2_17_x86_64.whl")))
    with pytest.raises(WheelError, match="free-threaded"):
        check_plan_wheels(_plan(python, _wheel("x-1.0-cp313-cp313-manylinux_2_17_x86_64.whl")))


def test_plan_python_uses_the_record() -> None:
    python = _python("3.14.2", "h0_cp314", python_site_packages_path="lib/python3.14/site-packages")
    info = plan_python(_plan(python))
    assert info.version == (3, 14)
    assert info.site_packages == "lib/python3.14/site-packages"


@pytest.mark.parametrize(
    ("virtual", "name", "expected"),
    [
        ((), "__glibc", "2.28"),
        (("__glibc >=2.17,<3.0.a0",), "__glibc", "2.28"),
        (("__glibc >=2.34",), "__glibc", "2.34"),
        (("__unix", "__glibc >=2.31", "__glibc >=2.35"), "__glibc", "2.35"),
        (("__osx >=11.0",), "__osx", "13.0"),
        (("__osx >=14.2",), "__osx", "14.2"),
    ],
)
def test_target_version(virtual: tuple[str, ...], name: str, expected: str) -> None:
    default = "2.28" if name == "__glibc" else "13.0"
    assert target_version(virtual, name, default) == expected


# --- --inject x.whl ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hello_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_injected_wheel(hello_wheel: Path) -> None:
    download = injected_wheel(hello_wheel)
    data = hello_wheel.read_bytes()
    assert download.artifact == Artifact(
        kind="wheel",
        name="hello-envpack",
        version="1.0",
        filename=WHEEL_NAME,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    assert download.artifact.path == f"pypi/{WHEEL_NAME}"
    assert download.url == hello_wheel.resolve().as_uri()
    check_plan_wheels(_plan(_python(), download))


def test_injected_wheel_tampered(hello_wheel: Path, tmp_path: Path) -> None:
    bad = rewrite_wheel(
        hello_wheel,
        tmp_path / WHEEL_NAME,
        replace={"hello_envpack/__init__.py": b"evil = True\n"},
        fix_record=False,
    )
    with pytest.raises(WheelError, match=r"--inject .*didn't match RECORD"):
        injected_wheel(bad)


def test_injected_wheel_escaping(hello_wheel: Path, tmp_path: Path) -> None:
    bad = rewrite_wheel(hello_wheel, tmp_path / WHEEL_NAME, add={"../evil.py": b"x\n"})
    with pytest.raises(WheelError, match="unsafe path"):
        injected_wheel(bad)


def test_injected_wheel_bad_names(tmp_path: Path, hello_wheel: Path) -> None:
    with pytest.raises(WheelError, match="no such file"):
        injected_wheel(tmp_path / WHEEL_NAME)
    odd = tmp_path / "hello.whl"
    shutil.copy(hello_wheel, odd)
    with pytest.raises(WheelError, match="not a wheel file name"):
        injected_wheel(odd)


# --- real locks -------------------------------------------------------------------------------

SHARED = real_shared_dir()
needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared (real locks) is absent")


def _real(name: str) -> Path:
    assert SHARED is not None
    return SHARED / "real-locks" / name


PYPI_WHEELS_LOCK = "Quantco_pixi-pack_examples_pypi-wheel-packages_pixi.lock"


@needs_shared
@pytest.mark.parametrize(
    ("lock", "platform", "wheels"),
    [
        (PYPI_WHEELS_LOCK, "linux-64", 3),
        (PYPI_WHEELS_LOCK, "linux-aarch64", 1),
        (PYPI_WHEELS_LOCK, "osx-arm64", 1),
        (PYPI_WHEELS_LOCK, "win-64", 1),
        (
            "prefix-dev_pixi_tests_data_satisfiability_wheel-with-correct-tags_pixi.lock",
            "linux-64",
            3,
        ),
        ("conda_rattler_test-data_conda-lock_v6_numpy-as-pypi-lock.yml", "osx-arm64", 1),
    ],
)
def test_real_locks_pass(lock: str, platform: str, wheels: int) -> None:
    plan, _ = plan_lock(_real(lock), "default", platform)
    assert sum(d.artifact.kind == "wheel" for d in plan.downloads) == wheels
    check_plan_wheels(plan)


@needs_shared
def test_real_lock_numpy_cp312_is_for_python_312() -> None:
    plan, _ = plan_lock(_real(PYPI_WHEELS_LOCK), "default", "linux-64")
    assert NUMPY_312 in {d.artifact.filename for d in plan.downloads}
    assert plan_python(plan).version == (3, 12)
    # The same wheels against a python 3.11 record: numpy is the one that cannot go.
    swapped = tuple(
        replace(
            d,
            record={**d.record, "version": "3.11.9"},
            artifact=replace(d.artifact, version="3.11.9"),
        )
        if d.artifact.name == "python"
        else d
        for d in plan.downloads
    )
    with pytest.raises(WheelError) as info:
        check_plan_wheels(replace(plan, downloads=swapped))
    assert NUMPY_312 in str(info.value)
    assert "ordered_enum" not in str(info.value)

"""envpack.core.wheeltags called directly: the python record, the target's platform tags,
wheel file names, and which wheels an environment accepts (and why not).

The manylinux ladder is compared with packaging's own ladder builder, told the target's glibc
instead of the host's, so the expected lists are derived, not typed in.
"""

from __future__ import annotations

import re

import pytest
from packaging import _manylinux
from packaging.tags import Tag, mac_platforms

from envpack.core.errors import WheelError
from envpack.core.wheeltags import (
    DEFAULT_GLIBC,
    DEFAULT_MACOS,
    PythonInfo,
    check_wheels_compatible,
    platform_tags,
    python_info_from_fields,
    supported_tags,
    wheel_tags,
)

PY311 = python_info_from_fields({"version": "3.11.9", "build": "h9e4cc4f_1_cpython"})
NUMPY_X86 = "numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
NUMPY_ARM = "numpy-2.1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"


def packaging_ladder(
    monkeypatch: pytest.MonkeyPatch, arch: str, glibc: tuple[int, int]
) -> list[str]:
    """packaging's manylinux tags for a host with this glibc (PEP 600), best first."""
    monkeypatch.setattr(_manylinux, "_get_glibc_version", lambda: _manylinux._GLibCVersion(*glibc))
    # A `_manylinux` module on this host would veto tags for the host, not for the target.
    monkeypatch.setattr(_manylinux, "_get_manylinux_module", lambda: None)
    return list(_manylinux.platform_tags([arch]))


# --- the python record -------------------------------------------------------------------------


def test_a_cpython_record_gives_its_paths_and_tags() -> None:
    info = python_info_from_fields({"version": "3.11.9", "build": "h9e4cc4f_1_cpython"})
    assert info == PythonInfo(
        version=(3, 11), site_packages="lib/python3.11/site-packages", interpreter="bin/python3.11"
    )
    assert (PY311.abi, PY311.interpreter_tag, PY311.label) == ("cp311", "cp311", "CPython 3.11")
    assert PY311.include == "include/python3.11"


@pytest.mark.parametrize(
    "fields",
    [
        {"version": "3.13.1", "build": "h9ebbce0_102_cp313t"},
        {
            "version": "3.13.1",
            "build": "h9ebbce0_102",
            "depends": ["libzlib >=1.3", "python_abi 3.13.* *_cp313t"],
        },
    ],
    ids=["build", "python_abi"],
)
def test_free_threading_is_read_from_the_build_or_python_abi(fields: dict[str, object]) -> None:
    info = python_info_from_fields(fields)
    assert info.free_threaded
    assert (info.abi, info.label) == ("cp313t", "CPython 3.13 (free-threaded)")
    assert info.site_packages == "lib/python3.13t/site-packages"
    assert info.interpreter == "bin/python3.13t"
    assert info.include == "include/python3.13t"


def test_a_plain_python_abi_dependency_is_not_free_threaded() -> None:
    info = python_info_from_fields(
        {"version": "3.13.1", "build": "h9ebbce0_102", "depends": ["python_abi 3.13.* *_cp313"]}
    )
    assert not info.free_threaded
    assert info.abi == "cp313"


def test_a_pypy_record_is_pypy() -> None:
    info = python_info_from_fields({"version": "3.10.14", "build": "0_pypy"})
    assert (info.implementation, info.interpreter_tag, info.label) == ("pp", "pp310", "PyPy 3.10")


def test_the_records_site_packages_path_wins() -> None:
    info = python_info_from_fields(
        {"version": "3.13.1", "build": "h0", "python_site_packages_path": "lib/py/site-packages"}
    )
    assert info.site_packages == "lib/py/site-packages"


@pytest.mark.parametrize("path", ["../lib/site-packages", "/usr/lib/site-packages", "lib/./sp"])
def test_an_unsafe_site_packages_path_is_refused(path: str) -> None:
    with pytest.raises(WheelError, match=r"site-packages path .* is unsafe"):
        python_info_from_fields({"version": "3.12.0", "python_site_packages_path": path})


@pytest.mark.parametrize("version", ["", "three", "3"])
def test_an_unreadable_python_version_is_refused(version: str) -> None:
    with pytest.raises(WheelError, match="cannot tell the python version"):
        python_info_from_fields({"version": version, "build": "h0"})


# --- platform tags -------------------------------------------------------------------------


@pytest.mark.parametrize("glibc", [(2, 17), (2, 28), (2, 35), (2, 5), (2, 12)])
def test_the_x86_64_ladder_is_packagings_for_that_glibc(
    monkeypatch: pytest.MonkeyPatch, glibc: tuple[int, int]
) -> None:
    ours = platform_tags("linux-64", f"{glibc[0]}.{glibc[1]}")
    assert ours == [*packaging_ladder(monkeypatch, "x86_64", glibc), "linux_x86_64"]
    assert ours[0] == f"manylinux_2_{glibc[1]}_x86_64"
    assert ours[-2:] == ["manylinux1_x86_64", "linux_x86_64"]


@pytest.mark.parametrize("glibc", [(2, 17), (2, 28), (2, 39)])
def test_the_aarch64_ladder_is_packagings_and_stops_at_2_17(
    monkeypatch: pytest.MonkeyPatch, glibc: tuple[int, int]
) -> None:
    ours = platform_tags("linux-aarch64", f"{glibc[0]}.{glibc[1]}")
    assert ours == [*packaging_ladder(monkeypatch, "aarch64", glibc), "linux_aarch64"]
    assert ours[-3:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64"]
    assert not any("manylinux1" in t or "manylinux2010" in t for t in ours)


def test_no_glibc_means_pixis_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert platform_tags("linux-64", None) == platform_tags("linux-64", DEFAULT_GLIBC)
    major, minor = map(int, DEFAULT_GLIBC.split("."))
    assert platform_tags("linux-64", None)[:-1] == packaging_ladder(
        monkeypatch, "x86_64", (major, minor)
    )


def test_a_longer_glibc_version_reads_its_major_and_minor() -> None:
    assert platform_tags("linux-64", "2.31.9") == platform_tags("linux-64", "2.31")


@pytest.mark.parametrize(
    ("glibc", "message"), [("3.1", "unexpected glibc version"), ("new", "cannot read the glibc")]
)
def test_an_impossible_glibc_is_refused(glibc: str, message: str) -> None:
    with pytest.raises(WheelError, match=message):
        platform_tags("linux-64", glibc)


@pytest.mark.parametrize(("subdir", "arch"), [("osx-arm64", "arm64"), ("osx-64", "x86_64")])
def test_macos_tags_are_packagings(subdir: str, arch: str) -> None:
    major, minor = map(int, DEFAULT_MACOS.split("."))
    assert platform_tags(subdir, None) == list(mac_platforms((major, minor), arch))
    assert platform_tags(subdir, None, macos="11.0") == list(mac_platforms((11, 0), arch))


def test_windows_and_unknown_platforms() -> None:
    assert platform_tags("win-64", None) == ["win_amd64"]
    with pytest.raises(WheelError, match="not supported for platform emscripten-wasm32"):
        platform_tags("emscripten-wasm32", None)


def test_supported_tags_are_for_the_envs_python_not_this_host() -> None:
    tags = supported_tags(PY311, "linux-aarch64", "2.28")
    assert Tag("cp311", "cp311", "manylinux_2_17_aarch64") in tags
    assert Tag("cp311", "abi3", "manylinux_2_28_aarch64") in tags
    assert Tag("cp39", "abi3", "manylinux2014_aarch64") in tags  # abi3 of an older python
    assert Tag("py3", "none", "any") in tags
    assert Tag("cp312", "cp312", "manylinux_2_17_aarch64") not in tags
    assert Tag("cp311", "cp311", "manylinux_2_17_x86_64") not in tags
    assert Tag("cp311", "cp311", "manylinux_2_29_aarch64") not in tags


def test_free_threaded_python_takes_no_abi3() -> None:
    threaded = python_info_from_fields({"version": "3.13.0", "build": "h0_cp313t"})
    tags = supported_tags(threaded, "linux-64", "2.28")
    assert Tag("cp313", "cp313t", "manylinux_2_17_x86_64") in tags
    assert Tag("cp313", "cp313", "manylinux_2_17_x86_64") not in tags
    assert Tag("cp313", "abi3", "manylinux_2_17_x86_64") not in tags


def test_pypy_takes_only_pure_and_its_own_none_tags() -> None:
    pypy = python_info_from_fields({"version": "3.10.14", "build": "0_pypy"})
    tags = supported_tags(pypy, "linux-64", "2.28")
    assert Tag("py3", "none", "any") in tags
    assert Tag("pp310", "none", "any") in tags
    assert not any(t.interpreter.startswith("cp") for t in tags)


# --- wheel file names ----------------------------------------------------------------------


def test_wheel_tags_expand_compressed_tag_sets() -> None:
    assert wheel_tags("six-1.16.0-py2.py3-none-any.whl") == {
        Tag("py2", "none", "any"),
        Tag("py3", "none", "any"),
    }
    assert wheel_tags(NUMPY_X86) == {
        Tag("cp311", "cp311", "manylinux_2_17_x86_64"),
        Tag("cp311", "cp311", "manylinux2014_x86_64"),
    }


@pytest.mark.parametrize("name", ["six-1.16.0.tar.gz", "six.whl", "six-1.16.0-py3-none.whl"])
def test_a_bad_wheel_name_is_refused_by_name(name: str) -> None:
    with pytest.raises(WheelError, match=re.escape(f"{name} is not a valid wheel file name")):
        wheel_tags(name)


# --- check_wheels_compatible ---------------------------------------------------------------


def test_fitting_wheels_are_accepted() -> None:
    pure = "six-1.16.0-py2.py3-none-any.whl"
    check_wheels_compatible([pure, NUMPY_X86], PY311, "linux-64", "2.28")
    check_wheels_compatible([pure, NUMPY_ARM], PY311, "linux-aarch64", None)
    check_wheels_compatible([pure, "pywin32-306-cp311-cp311-win_amd64.whl"], PY311, "win-64", None)
    check_wheels_compatible([], PY311, "linux-64", None)


def test_a_wheel_for_another_python_names_it() -> None:
    wheel = NUMPY_X86.replace("cp311", "cp312")
    with pytest.raises(WheelError) as caught:
        check_wheels_compatible([wheel], PY311, "linux-64", "2.28")
    assert str(caught.value) == (
        "wheels incompatible with the environment's CPython 3.11 on linux-64 with glibc 2.28: "
        f"{wheel} (built for cp312-cp312, not CPython 3.11)"
    )


def test_a_wheel_for_another_machine_names_its_platforms() -> None:
    with pytest.raises(WheelError, match=r"with glibc 2\.28: ") as caught:
        check_wheels_compatible([NUMPY_X86], PY311, "linux-aarch64", None)
    expected = ", ".join(sorted(t.platform for t in wheel_tags(NUMPY_X86)))
    assert f"{NUMPY_X86} (built for {expected}, not linux-aarch64)" in str(caught.value)


def test_a_wheel_needing_a_newer_glibc_says_which() -> None:
    wheel = "pkg-1.0-cp311-cp311-manylinux_2_34_x86_64.manylinux_2_31_x86_64.whl"
    with pytest.raises(WheelError) as caught:
        check_wheels_compatible([wheel], PY311, "linux-64", "2.17")
    assert str(caught.value).endswith(f"{wheel} (needs glibc 2.31, the target has 2.17)")
    # One minor more than the wheel needs is enough.
    check_wheels_compatible([wheel], PY311, "linux-64", "2.31")


def test_every_misfit_is_named_in_one_error_and_fits_are_not() -> None:
    pure = "six-1.16.0-py2.py3-none-any.whl"
    cp310 = NUMPY_X86.replace("cp311", "cp310")
    with pytest.raises(WheelError) as caught:
        check_wheels_compatible([pure, cp310, NUMPY_ARM], PY311, "linux-64", None)
    message = str(caught.value)
    assert f"with glibc {DEFAULT_GLIBC}:" in message
    assert message.count("; ") == 1
    assert cp310 in message and NUMPY_ARM in message and pure not in message


def test_windows_targets_say_no_glibc() -> None:
    with pytest.raises(WheelError) as caught:
        check_wheels_compatible([NUMPY_X86], PY311, "win-64", None)
    assert "CPython 3.11 on win-64: " in str(caught.value)
    assert "glibc" not in str(caught.value)


def test_an_invalid_wheel_name_fails_the_check() -> None:
    with pytest.raises(WheelError, match="not a valid wheel file name"):
        check_wheels_compatible(["numpy.whl"], PY311, "linux-64", None)

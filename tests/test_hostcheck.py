"""hostcheck: this machine's platform and glibc, and the refusals before anything is written."""

from __future__ import annotations

import os
import platform

import pytest

from envpack.core.errors import IncompatibleTargetError
from envpack.target.hostcheck import (
    check_platform,
    check_virtual_packages,
    glibc_from_files,
    host_platform,
    host_virtual_packages,
)

_SUBDIRS = {"x86_64": "linux-64", "aarch64": "linux-aarch64"}


def _libc_version() -> str:
    return os.confstr("CS_GNU_LIBC_VERSION").split()[1]  # type: ignore[union-attr]


def test_host_platform_is_this_machines_subdir() -> None:
    assert host_platform() == _SUBDIRS[platform.machine()]


def test_glibc_from_files_is_the_running_glibc() -> None:
    assert glibc_from_files() == _libc_version()


def test_host_virtual_packages_detects_glibc_and_honours_the_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONDA_OVERRIDE_GLIBC", raising=False)
    detected = host_virtual_packages()
    assert detected["__glibc"] == _libc_version()
    assert "__unix" in detected
    monkeypatch.setenv("CONDA_OVERRIDE_GLIBC", "2.17")
    assert host_virtual_packages()["__glibc"] == "2.17"


def test_under_staticx_the_hosts_libc_file_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONDA_OVERRIDE_GLIBC", raising=False)
    monkeypatch.setenv("STATICX_PROG_PATH", "/usr/bin/envunpack")
    assert host_virtual_packages()["__glibc"] == glibc_from_files()
    # A stated override still wins over the files.
    monkeypatch.setenv("CONDA_OVERRIDE_GLIBC", "2.28")
    assert host_virtual_packages()["__glibc"] == "2.28"


def test_check_platform() -> None:
    check_platform("linux-64", "linux-64")
    check_platform("noarch", "linux-64")
    with pytest.raises(IncompatibleTargetError) as info:
        check_platform("linux-aarch64", "linux-64")
    assert str(info.value) == (
        "this archive is for linux-aarch64, but this machine is linux-64; "
        "pack it again with `envpack --platform linux-64`"
    )


def test_check_virtual_packages_accepts_what_the_host_has() -> None:
    host = {"__glibc": "2.36", "__unix": "0"}
    check_virtual_packages(("__glibc >=2.17", "__unix", "__linux >=4", "not a spec ((("), host)
    check_virtual_packages(("__glibc",), host)


def test_check_virtual_packages_refuses_an_older_glibc() -> None:
    with pytest.raises(IncompatibleTargetError) as info:
        check_virtual_packages(("__glibc >=2.40",), {"__glibc": "2.36"})
    message = str(info.value)
    assert "needs glibc >=2.40, but this machine has glibc 2.36" in message
    assert "CONDA_OVERRIDE_GLIBC" in message


def test_check_virtual_packages_refuses_a_host_without_glibc() -> None:
    with pytest.raises(IncompatibleTargetError) as info:
        check_virtual_packages(("__glibc >=2.17",), {"__unix": "0"})
    assert "no glibc was found on this machine" in str(info.value)

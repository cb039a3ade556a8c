"""devtools/wheelbuild.py: the tiny wheel is a real wheel, with what its project declares."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from devtools import wheelbuild


def test_the_wheel_holds_its_module_scripts_and_data(tmp_path: Path) -> None:
    if wheelbuild.wheel_capable_python() is None:
        pytest.skip("no interpreter with pip, setuptools and wheel")
    wheel = wheelbuild.build_wheel(tmp_path)
    assert wheel.name == wheelbuild.WHEEL_NAME
    names = set(zipfile.ZipFile(wheel).namelist())
    dist = wheelbuild.DIST
    assert {
        "hello_envpack/__init__.py",
        "hello_envpack/data.txt",
        f"{dist}.data/scripts/hello-raw",
        f"{dist}.data/data/share/hello-envpack/readme.txt",
        f"{dist}.dist-info/entry_points.txt",
        f"{dist}.dist-info/RECORD",
    } <= names
    entry_points = zipfile.ZipFile(wheel).read(f"{dist}.dist-info/entry_points.txt").decode()
    assert "hello-envpack = hello_envpack:main" in entry_points

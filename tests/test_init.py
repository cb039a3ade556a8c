"""envpack/__init__: the version the CLIs print is the one pyproject releases."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from packaging.version import Version

import envpack


def test_version_matches_pyproject_and_the_installed_metadata() -> None:
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert envpack.__version__ == pyproject["project"]["version"]
    assert envpack.__version__ == importlib.metadata.version("envpack")
    # A public version: no local part for the archive's manifest to carry around.
    assert Version(envpack.__version__).public == envpack.__version__

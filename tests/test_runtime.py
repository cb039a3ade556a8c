"""envpack.target.runtime: the frozen-build facts, read where PyInstaller and staticx put them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from envpack.target import runtime


def test_a_normal_python_is_not_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    monkeypatch.delenv("STATICX_PROG_PATH", raising=False)
    assert runtime.bundle_dir() is None and not runtime.is_frozen()
    assert runtime.static_program() is None
    assert runtime.own_executable() == Path(sys.executable)


def test_frozen_and_static(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.setenv("STATICX_PROG_PATH", "/opt/app/env.run")
    assert runtime.bundle_dir() == tmp_path and runtime.is_frozen()
    # The payload of a self-extracting file is in the file the user started, not the copy.
    assert runtime.own_executable() == Path("/opt/app/env.run")

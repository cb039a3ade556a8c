"""buildinfo: `--version` says which build is running."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from envpack import __version__
from envpack.target import buildinfo


def test_not_frozen_reports_python() -> None:
    assert not hasattr(sys, "_MEIPASS")
    assert buildinfo.build_platform() == "python"
    assert buildinfo.version_line() == f"envunpack {__version__} (python)"


def test_frozen_reads_the_file_the_build_wrote(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    (tmp_path / buildinfo.BUILD_INFO_NAME).write_text("linux-aarch64, static\n")
    assert buildinfo.version_line("x") == f"x {__version__} (linux-aarch64, static)"


@pytest.mark.parametrize("content", [None, "\n"])
def test_frozen_without_usable_file_still_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None
) -> None:
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    if content is not None:
        (tmp_path / buildinfo.BUILD_INFO_NAME).write_text(content)
    assert buildinfo.build_platform() == "frozen"

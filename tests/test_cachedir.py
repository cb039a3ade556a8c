"""envpack.packer.cachedir: where the cache goes, and one clear error when it cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest

from envpack.core.errors import OutputError
from envpack.packer.cachedir import default_cache_dir, ensure_cache_dir


def test_default_follows_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "envpack" / "pkgs"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "envpack" / "pkgs"


def test_missing_home_is_an_error_not_a_new_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")
    with pytest.raises(OutputError, match="--cache"):
        default_cache_dir()
    assert not Path("/nonexistent").exists()


def test_ensure_creates_and_probes(tmp_path: Path) -> None:
    cache = ensure_cache_dir(tmp_path / "a" / "b")
    assert cache.is_dir() and list(cache.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        ensure_cache_dir(tmp_path / "file")
    with pytest.raises(OutputError, match="--cache"):
        ensure_cache_dir(Path("/proc/envpack-cache"))

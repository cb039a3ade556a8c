"""envpack.packer.pkgcache: the usual package cache locations and hash-checked lookups there."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from envpack.core.errors import HashMismatchError
from envpack.core.models import Artifact, Download
from envpack.packer.pkgcache import channel_layout, default_caches, find_cached


def test_default_caches(tmp_path: Path) -> None:
    env = tmp_path / "miniforge3" / "envs" / "work"
    home = tmp_path / "home"
    found = default_caches(env, {"CONDA_PKGS_DIRS": "/a,/b", "PIXI_CACHE_DIR": "/pixi"}, home)
    assert found[:3] == [Path("/a"), Path("/b"), tmp_path.resolve() / "miniforge3" / "pkgs"]
    assert Path("/pixi/pkgs") in found
    assert home / ".conda" / "pkgs" in found
    assert len(found) == len(set(found))
    assert os.fspath(env / "pkgs") in map(os.fspath, found)


def _download(data: bytes, *, sha256: bool = True, md5: bool = False) -> Download:
    artifact = Artifact(
        kind="conda",
        name="x",
        version="1",
        build="0",
        filename="x-1-0.conda",
        subdir="linux-64",
        sha256=hashlib.sha256(data).hexdigest() if sha256 else None,
        md5=hashlib.md5(data).hexdigest() if md5 else None,
    )
    return Download(artifact=artifact, url="https://example.invalid/x-1-0.conda")


def test_find_cached_in_either_layout(tmp_path: Path) -> None:
    data = b"package bytes"
    flat, channel = tmp_path / "pkgs", tmp_path / "pixi-pack"
    (channel / "linux-64").mkdir(parents=True)
    flat.mkdir()
    for download in (_download(data), _download(data, sha256=False, md5=True)):
        assert find_cached(download, channel_layout(download, [flat, channel])) is None
        (channel / "linux-64" / "x-1-0.conda").write_bytes(data)
        found = find_cached(download, channel_layout(download, [flat, channel]))
        assert found is not None and found.path == channel / "linux-64" / "x-1-0.conda"
        assert found.size == len(data) and found.sha256 == hashlib.sha256(data).hexdigest()
        (channel / "linux-64" / "x-1-0.conda").unlink()


def test_a_wrong_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "x-1-0.conda").write_bytes(b"other bytes")
    download = _download(b"package bytes")
    with pytest.raises(HashMismatchError, match=str(tmp_path / "x-1-0.conda")):
        find_cached(download, channel_layout(download, [tmp_path]))


def test_nothing_to_check_against_is_no_hit(tmp_path: Path) -> None:
    (tmp_path / "x-1-0.conda").write_bytes(b"package bytes")
    download = _download(b"package bytes", sha256=False)
    assert find_cached(download, channel_layout(download, [tmp_path])) is None

"""ocibase: reading a base image (archive or layout), refusing what cannot be used, its glibc."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from devtools.rootfs import ensure_rootfs
from envpack.core.errors import ImageError
from envpack.packer.ocibase import base_glibc, read_base, read_layout
from envpack.packer.ocilayers import write_blob
from envpack.target.hostcheck import glibc_in_libc
from tests.ocirun import base_from_rootfs


def _layout(root: Path, config: dict[str, Any], layers: list[bytes], *, extra: int = 0) -> Path:
    """A minimal OCI layout written by hand: index → manifest → config and layers."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    descriptors = [{"digest": f"sha256:{write_blob(blobs, b)}", "size": len(b)} for b in layers]
    config = {"rootfs": {"diff_ids": ["sha256:" + "0" * 64] * len(layers)}, **config}
    config_digest = write_blob(blobs, json.dumps(config).encode())
    manifest = json.dumps(
        {"schemaVersion": 2, "config": {"digest": f"sha256:{config_digest}"}, "layers": descriptors}
    ).encode()
    entry = {"digest": f"sha256:{write_blob(blobs, manifest)}", "size": len(manifest)}
    (root / "index.json").write_text(json.dumps({"manifests": [entry] * (1 + extra)}))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root


def _tar(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return out.getvalue()


AMD64 = {"os": "linux", "architecture": "amd64"}
LIBC = b"\0GNU C Library (Debian GLIBC 2.99-1) stable release version 2.99.\n"


def test_layout_for_the_platform_is_read(tmp_path: Path) -> None:
    base = read_layout(_layout(tmp_path, AMD64, [_tar({"etc/x": b"x"})]), "linux-64", "b")
    assert base.config["architecture"] == "amd64"
    assert len(base.layers) == 1


def test_another_architecture_is_refused(tmp_path: Path) -> None:
    layout = _layout(tmp_path, {"os": "linux", "architecture": "arm64"}, [])
    with pytest.raises(ImageError, match="linux/arm64, but the env is for linux-64"):
        read_layout(layout, "linux-64", "b")


def test_libc_found_through_symlinks_in_upper_layers(tmp_path: Path) -> None:
    lower = _tar({"usr/lib/x86_64-linux-gnu/libc-2.99.so": LIBC}, {"lib": "usr/lib"})
    upper = _tar({}, {"usr/lib/x86_64-linux-gnu/libc.so.6": "libc-2.99.so"})
    base = read_layout(_layout(tmp_path, AMD64, [lower, upper]), "linux-64", "b")
    assert base_glibc(base, "linux-64") == "2.99"


def test_no_libc_is_none(tmp_path: Path) -> None:
    base = read_layout(_layout(tmp_path, AMD64, [_tar({"bin/sh": b"\x7fELF"})]), "linux-64", "b")
    assert base_glibc(base, "linux-64") is None


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("index", "cannot read index.json"),
        ("blob", "is missing"),
        ("two", "2 image manifests"),
    ],
)
def test_broken_layouts_are_named(tmp_path: Path, damage: str, needle: str) -> None:
    layout = _layout(tmp_path, AMD64, [_tar({"a": b"a"})], extra=1 if damage == "two" else 0)
    if damage == "index":
        (layout / "index.json").write_text("{not json")
    if damage == "blob":
        for blob in (layout / "blobs" / "sha256").iterdir():
            if not blob.read_bytes().startswith(b"{"):  # the layer, not a JSON document
                blob.unlink()
    with pytest.raises(ImageError, match=needle):
        read_layout(layout, "linux-64", "b")


def test_archive_extracts_only_layout_files(tmp_path: Path) -> None:
    layout = _layout(tmp_path / "src", AMD64, [_tar({"a": b"a"})])
    archive = tmp_path / "base.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
        evil = tarfile.TarInfo("../escaped")
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))
        link = tarfile.TarInfo("blobs/sha256/" + "a" * 64)
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    work = tmp_path / "work"
    work.mkdir()
    base = read_base(archive, work, "linux-64")
    assert len(base.layers) == 1
    assert not (tmp_path / "escaped").exists() and not (work / "escaped").exists()
    assert not (work / "base" / "blobs" / "sha256" / ("a" * 64)).exists()


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"junk" * 100)
    with pytest.raises(ImageError, match="cannot read it as an OCI archive"):
        read_base(tmp_path / "junk", tmp_path, "linux-64")


@pytest.mark.slow
@pytest.mark.container
@pytest.mark.parametrize(("suite", "libc"), [("bookworm", "usr/lib"), ("bullseye", "lib")])
def test_glibc_of_real_debian_bases(tmp_path: Path, suite: str, libc: str) -> None:
    _, archive = base_from_rootfs(suite, "amd64", tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    base = read_base(archive, work, "linux-64")
    # What the root's own libc says (bullseye's libc.so.6 is a link to libc-2.31.so).
    root = ensure_rootfs(suite, "amd64")
    expected = glibc_in_libc((root / libc / "x86_64-linux-gnu" / "libc.so.6").read_bytes())
    assert expected is not None
    assert base_glibc(base, "linux-64") == expected

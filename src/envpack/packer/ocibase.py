"""`--base`: a base image read from an OCI archive or layout, checked before anything is built.

`read_layout` is the seam for other sources: a registry pull only has to leave the base
image in a local OCI layout directory first.
"""

from __future__ import annotations

import gzip
import json
import posixpath
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from envpack.core.errors import ImageError
from envpack.core.layout import ARCHES
from envpack.target.hostcheck import glibc_in_libc, libc_paths

INDEX_MEDIA = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA = "application/vnd.oci.image.manifest.v1+json"
_MANIFESTS = (MANIFEST_MEDIA, "application/vnd.docker.distribution.manifest.v2+json")
_LAYOUT_NAME = re.compile(r"oci-layout|index\.json|blobs/sha256/[0-9a-f]{64}")
# conda platform → OCI os, architecture, variant
PLATFORMS: dict[str, tuple[str, str, str | None]] = {
    "linux-64": ("linux", "amd64", None),
    "linux-aarch64": ("linux", "arm64", "v8"),
    "linux-ppc64le": ("linux", "ppc64le", None),
    "linux-s390x": ("linux", "s390x", None),
    "linux-armv7l": ("linux", "arm", "v7"),
}


@dataclass(frozen=True)
class BaseImage:
    name: str  # as the user gave it, for messages
    config: dict[str, Any]
    layers: tuple[tuple[dict[str, Any], Path], ...]  # (descriptor, blob file)


def oci_platform(platform: str) -> tuple[str, str, str | None]:
    if platform not in PLATFORMS:
        raise ImageError(f"--oci-image cannot build images for {platform}; use a linux platform")
    return PLATFORMS[platform]


def read_base(ref: Path, work: Path, platform: str) -> BaseImage:
    """An `oci-archive` tar (extracted below `work`) or an OCI layout directory."""
    if ref.is_dir():
        return read_layout(ref, platform, str(ref))
    layout = work / "base"
    try:
        with ref.open("rb") as fh, tarfile.open(fileobj=fh, mode="r|*") as tar:
            for member in tar:
                _extract(tar, member, layout)
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ImageError(f"--base {ref}: cannot read it as an OCI archive ({exc})") from None
    return read_layout(layout, platform, str(ref))


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, layout: Path) -> None:
    """Only the files an OCI layout has: oci-layout, index.json, blobs/sha256/<hex>.

    Whatever else an archive holds (links, devices, odd names) is never written.
    """
    name = posixpath.normpath(member.name.removeprefix("./"))
    if not member.isfile() or not _LAYOUT_NAME.fullmatch(name):
        return
    stream = tar.extractfile(member)
    assert stream is not None  # a regular file always has one
    path = layout / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as out:
        shutil.copyfileobj(stream, out, 1 << 20)


def read_layout(layout: Path, platform: str, name: str) -> BaseImage:
    """The image in an OCI layout for `platform`; another architecture is refused."""
    index = _json(layout, layout / "index.json", name)
    manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    wanted = oci_platform(platform)
    manifest = _pick(layout, manifests, wanted, name)
    config = _json(layout, _blob(layout, manifest.get("config"), name), name)
    have = (config.get("os"), config.get("architecture"), config.get("variant"))
    if have[:2] != wanted[:2] or (have[2] and wanted[2] and have[2] != wanted[2]):
        shown = "/".join(str(x) for x in have if x)
        raise ImageError(
            f"--base {name} is an image for {shown}, but the env is for {platform}; "
            f"use a base image for {'/'.join(x for x in wanted if x)}"
        )
    layers = tuple((d, _blob(layout, d, name)) for d in manifest.get("layers") or [])
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layers):
        raise ImageError(f"--base {name}: its config and manifest disagree on the layers")
    return BaseImage(name, config, layers)


def _pick(
    layout: Path, manifests: list[dict[str, Any]], wanted: tuple[str, str, str | None], name: str
) -> dict[str, Any]:
    found: list[dict[str, Any]] = []
    for descriptor in manifests:
        doc = _json(layout, _blob(layout, descriptor, name), name)
        if descriptor.get("mediaType") == INDEX_MEDIA or doc.get("mediaType") == INDEX_MEDIA:
            found += [
                _json(layout, _blob(layout, m, name), name)
                for m in doc.get("manifests") or []
                if (m.get("platform") or {}).get("architecture") == wanted[1]
            ]
        elif doc.get("mediaType", MANIFEST_MEDIA) in _MANIFESTS:
            found.append(doc)
    if len(found) != 1:
        what = "no image manifest" if not found else f"{len(found)} image manifests"
        raise ImageError(f"--base {name}: {what} in its index.json; give a single image")
    return found[0]


def _blob(layout: Path, descriptor: object, name: str) -> Path:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    algo, _, hexpart = str(digest).partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not hexpart.isalnum():
        raise ImageError(f"--base {name}: a descriptor has no valid sha256 digest")
    path = layout / "blobs" / "sha256" / hexpart
    if not path.is_file():
        raise ImageError(f"--base {name}: blob {digest} is missing; the image is incomplete")
    return path


def _json(layout: Path, path: Path, name: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        what = path.relative_to(layout) if path.is_relative_to(layout) else path
        raise ImageError(f"--base {name}: cannot read {what} ({exc})") from None
    if not isinstance(doc, dict):
        raise ImageError(f"--base {name}: {path.name} is not a JSON object")
    return doc


def base_glibc(base: BaseImage, platform: str) -> str | None:
    """The glibc version of the base's libc.so.6, or None if none is found.

    Upper layers win; symlinks (bullseye's libc.so.6 -> libc-2.31.so, merged-usr's
    /lib -> usr/lib) are followed within the image, never on this machine. One pass per
    layer: a base layer is tens of MB of gzip.
    """
    links: dict[str, str] = {}
    banners: dict[str, str | None] = {}  # every libc*.so* file seen → its glibc version
    for _, blob in base.layers:
        try:
            with (
                _open_layer(blob) as raw,
                tarfile.open(fileobj=raw, mode="r|*", bufsize=1 << 20) as tar,
            ):
                for member in tar:
                    name = posixpath.normpath(member.name.removeprefix("./"))
                    if member.issym():
                        links[name] = member.linkname
                        banners.pop(name, None)
                    elif member.isfile() and posixpath.basename(name).startswith("libc"):
                        links.pop(name, None)
                        stream = tar.extractfile(member)
                        banners[name] = glibc_in_libc(stream.read()) if stream else None
        except (OSError, tarfile.TarError, EOFError):
            continue  # an unreadable layer: the check says it found no libc
    for candidate in libc_paths(ARCHES.get(platform, "")):
        resolved = _resolve(candidate.lstrip("/"), links)
        if banners.get(resolved):
            return banners[resolved]
    return None


def _resolve(path: str, links: dict[str, str]) -> str:
    resolved = ""
    for part in path.split("/"):
        current = posixpath.join(resolved, part) if resolved else part
        for _ in range(16):  # a loop of links resolves to nothing useful
            if current not in links:
                break
            target = links[current]
            joined = (
                target
                if target.startswith("/")
                else posixpath.join(posixpath.dirname(current), target)
            )
            current = posixpath.normpath(joined).lstrip("/")
        resolved = current
    return resolved


def _open_layer(blob: Path) -> BinaryIO:
    with blob.open("rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(blob, "rb")  # type: ignore[return-value]
    return blob.open("rb")

"""Pushing to a registry: a pack as an OCI artifact, or an OCI image layout as it is.

A pack goes up as one blob per member, byte-identical, so a package's blob digest is the
sha256 the lock pins and two envs that share a package share its blob. envpack.json is the
config, under its own media type. Only blobs the registry lacks are sent: HEAD first, then a
cross-repository mount where one is known or asked for (--mount-from), then the upload.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envpack.core.archive import iter_members
from envpack.core.errors import RegistryError, UsageError
from envpack.core.folder import iter_directory
from envpack.core.hashing import hash_file
from envpack.core.layout import CHUNK, MANIFEST_NAME
from envpack.core.models import Manifest
from envpack.core.ociref import (
    ENV_ARTIFACT_TYPE,
    ENVIRONMENT_KEY,
    INDEX_TYPE,
    LOCK_KEY,
    MANIFEST_TYPE,
    PLATFORM_KEY,
    TITLE,
    OciRef,
    media_type,
)
from envpack.packer.registrypush import PushSession, Sent


@dataclass(frozen=True)
class Pushed:
    ref: OciRef
    digest: str  # of the manifest: `oci://HOST/REPO@DIGEST` names exactly this push
    size: int  # bytes of all blobs the manifest names
    traffic: Sent


def push_pack(folder: Path, manifest: Manifest, registry: PushSession) -> Pushed:
    """Push a pack written as a folder (packdir) as an envpack artifact."""
    ref, reporter = registry.ref, registry.reporter
    layers: list[dict[str, Any]] = []
    config: dict[str, Any] | None = None
    # iter_directory: the archive's member order and its checks, so a pull reads the same.
    names = [member.name for member in iter_directory(folder)]
    bar = reporter.bar("push", sum((folder / n).stat().st_size for n in names), "B")
    try:
        for name in names:
            path = folder / name
            digest = f"sha256:{hash_file(path).sha256}"
            media = ENV_ARTIFACT_TYPE if name == MANIFEST_NAME else media_type(name)
            registry.push_blob(path, digest, media)
            bar.update(path.stat().st_size)
            descriptor = {"mediaType": media, "digest": digest, "size": path.stat().st_size}
            if name == MANIFEST_NAME:
                config = descriptor
            else:
                layers.append({**descriptor, "annotations": {TITLE: name}})
    finally:
        bar.close()
    assert config is not None  # iter_directory refuses a folder without envpack.json
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ENV_ARTIFACT_TYPE,
        "config": config,
        "layers": layers,
        "annotations": {
            PLATFORM_KEY: manifest.platform,
            ENVIRONMENT_KEY: manifest.environment,
            LOCK_KEY: manifest.lock_sha256,
        },
    }
    # Canonical bytes: the same pack gives the same manifest digest, push after push.
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    digest = registry.put_manifest(data, MANIFEST_TYPE, ref.tag or "latest")
    size = config["size"] + sum(layer["size"] for layer in layers)
    return Pushed(ref, digest, size, registry.traffic)


def push_layout(
    layout: Path,
    registry: PushSession,
    *,
    name: str | None = None,
    mounts: Mapping[str, str] | None = None,
) -> Pushed:
    """Push the image of an OCI image layout (a directory, or an oci-archive tar) to the
    session's reference. `mounts` maps a blob's digest to the repository of the same
    registry it is mounted from, if missing (a --base's layers).

    The manifest goes up as its exact bytes, so the pushed digest is the layout's. `name`
    picks the index entry by its org.opencontainers.image.ref.name when there are several.
    """
    if layout.is_file():
        with tempfile.TemporaryDirectory(prefix="envpack-layout-") as tmp:
            _extract(layout, Path(tmp))
            return push_layout(Path(tmp), registry, name=name, mounts=mounts)
    entry = _index_entry(layout, name)
    manifest = _blob(layout, entry["digest"]).read_bytes()
    if json.loads(manifest).get("mediaType", entry.get("mediaType")) == INDEX_TYPE:
        raise UsageError(f"{layout}: multi-platform indexes are not pushed yet; push one image")
    media = json.loads(manifest).get("mediaType") or entry.get("mediaType") or MANIFEST_TYPE
    return push_image(registry, manifest, lambda digest: _blob(layout, digest), mounts, media)


def push_image(
    registry: PushSession,
    manifest: bytes,
    blob: Callable[[str], Path],
    mounts: Mapping[str, str] | None = None,
    media: str = MANIFEST_TYPE,
) -> Pushed:
    """Push an image manifest's blobs (`blob` finds each digest's file), then its exact bytes."""
    ref, reporter, mounts = registry.ref, registry.reporter, mounts or {}
    document = json.loads(manifest)
    descriptors = [document["config"], *document.get("layers", [])]
    bar = reporter.bar("push", sum(int(d["size"]) for d in descriptors), "B")
    try:
        for descriptor in descriptors:
            digest = descriptor["digest"]
            sources = [mounts[digest]] if digest in mounts else []
            registry.push_blob(blob(digest), digest, descriptor["mediaType"], sources)
            bar.update(int(descriptor["size"]))
    finally:
        bar.close()
    digest = registry.put_manifest(manifest, media, ref.tag or "latest")
    return Pushed(ref, digest, sum(int(d["size"]) for d in descriptors), registry.traffic)


def image_blobs(layout: Path) -> list[str]:
    """The digests of the config and layers of a layout's one image (a pulled --base)."""
    document = json.loads(_blob(layout, _index_entry(layout, None)["digest"]).read_bytes())
    return [str(d["digest"]) for d in [document["config"], *document.get("layers", [])]]


def _extract(archive: Path, into: Path) -> None:
    """An oci-archive through the archive reader's checks: no links, nothing outside `into`."""
    try:
        with archive.open("rb") as raw:
            for member in iter_members(raw):
                dest = into / member.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                with dest.open("wb") as out:
                    shutil.copyfileobj(member.stream, out, CHUNK)
    except OSError as exc:
        raise UsageError(f"cannot read the OCI archive {archive}: {exc.strerror}") from None


def _index_entry(layout: Path, name: str | None) -> dict[str, Any]:
    try:
        index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
        entries = list(index["manifests"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{layout} is not an OCI image layout (no readable index.json)") from None
    if name is not None:
        entries = [
            e
            for e in entries
            if e.get("annotations", {}).get("org.opencontainers.image.ref.name") == name
        ]
    if len(entries) != 1:
        raise UsageError(
            f"{layout} holds {len(entries)} images{f' named {name!r}' if name else ''}; "
            "name exactly one"
        )
    return dict(entries[0])


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, hexdigest = str(digest).partition(":")
    path = layout / "blobs" / algorithm / hexdigest
    if algorithm != "sha256" or not hexdigest.isalnum() or not path.is_file():
        raise RegistryError(f"{layout}: blob {digest} is missing from the layout")
    return path

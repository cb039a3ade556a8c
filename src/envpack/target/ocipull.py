"""Pulling from a registry: an envpack artifact as a folder pack, or an image as a layout.

The manifest's type and platform are checked before anything is created, then envpack.json
(the config) against its digest, this host's glibc and every layer, and only then are blobs
fetched, each verified as it streams. The blobs land in a blob store (`--cache DIR`, kept
so the next version fetches only what changed; else a temp dir) and are presented as a
folder pack, so the unpack runs the same checks, atomic swap and --force rules as a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envpack.core.errors import RegistryError, output_error
from envpack.core.hashing import hash_file
from envpack.core.layout import ENVIRONMENT_YML, MANIFEST_NAME, PIXI_PACK_NAME, is_repodata_path
from envpack.core.manifest import manifest_from_json
from envpack.core.models import Manifest
from envpack.core.ociref import (
    DOCKER_LIST_TYPE,
    DOCKER_MANIFEST_TYPE,
    ENV_ARTIFACT_TYPE,
    INDEX_TYPE,
    MANIFEST_TYPE,
    PLATFORM_KEY,
    TITLE,
    OciRef,
    parse_ref,
)
from envpack.core.pathsafety import is_plain_relative
from envpack.core.progress import Reporter
from envpack.target.hostcheck import (
    check_platform,
    check_virtual_packages,
    host_platform,
    host_virtual_packages,
)
from envpack.target.registry import Registry, Traffic

_ACCEPT = (MANIFEST_TYPE, INDEX_TYPE, DOCKER_MANIFEST_TYPE, DOCKER_LIST_TYPE)
_IMAGE_TYPES = (MANIFEST_TYPE, DOCKER_MANIFEST_TYPE)


@dataclass(frozen=True)
class PullOptions:
    cache: Path | None = None  # a blob store kept between pulls
    insecure: bool = False  # plain HTTP
    manifest_only: bool = False  # `--list`: envpack.json alone, no layer fetched
    prune: bool = False  # after a good unpack, the cache keeps this env's blobs only


@dataclass
class Pulled:
    folder: Path  # a folder pack: envunpack reads it like `envpack --directory-only` output
    traffic: Traffic


@contextmanager
def pulled(text: str, options: PullOptions, reporter: Reporter) -> Iterator[Pulled]:
    """The envpack artifact at `text`, fetched and verified, as a folder pack for the block."""
    ref = parse_ref(text)
    registry = Registry(ref, insecure=options.insecure, reporter=reporter)
    media, data = registry.get_manifest(ref.reference, _ACCEPT)
    document = _envpack_manifest(ref, media, data)
    platform = str(document.get("annotations", {}).get(PLATFORM_KEY, ""))
    host = not options.manifest_only  # `--list` describes an env for any machine
    if host:
        check_platform(platform or "unknown", host_platform())  # before anything is created
    with _store(options.cache) as store:
        config = document["config"]
        config_path = _fetch(registry, store, config, reporter)
        manifest = manifest_from_json(config_path.read_bytes())
        if manifest.platform != platform:
            raise RegistryError(
                f"{ref}: the manifest says {platform}, envpack.json "
                f"{manifest.platform}; the artifact is inconsistent"
            )
        if host:
            check_virtual_packages(manifest.virtual_packages, host_virtual_packages())
        layers = _layers(ref, document, manifest) if host else {}
        total = sum(int(layer["size"]) for layer in layers.values())
        reporter.info(f"fetching {len(layers)} blobs ({total / 1e6:.1f} MB) from {ref}")
        bar = reporter.bar("pull", total, "B")
        try:
            blobs = {
                name: _fetch(registry, store, layer, reporter, bar)
                for name, layer in layers.items()
            }
        finally:
            bar.close()
        try:
            view = Path(tempfile.mkdtemp(prefix=".pack-", dir=store))
        except OSError as exc:
            raise output_error(store, exc, "writing the blob cache") from None
        try:
            for name, blob in [(MANIFEST_NAME, config_path), *blobs.items()]:
                _place(blob, view / name)
            yield Pulled(view, registry.traffic)
            if options.prune and options.cache is not None:  # only after a good unpack
                _prune(store, {p.name for p in (config_path, *blobs.values())}, reporter)
        finally:
            shutil.rmtree(view, ignore_errors=True)


def pull_to_layout(
    text: str,
    layout: Path,
    *,
    platform: str | None = None,
    insecure: bool = False,
    reporter: Reporter,
) -> str:
    """Write the image at `text` into the OCI image layout `layout`; returns its digest.

    For a multi-platform index, `platform` ("linux/amd64", "linux/arm64") picks the image.
    Blobs already in the layout are re-verified and kept, so a layout doubles as a cache.
    """
    ref = parse_ref(text)
    registry = Registry(ref, insecure=insecure, reporter=reporter)
    media, data = registry.get_manifest(ref.reference, _ACCEPT)
    if media in (INDEX_TYPE, DOCKER_LIST_TYPE):
        wanted = _platform_entry(ref, json.loads(data), platform)
        media, data = registry.get_manifest(wanted, _ACCEPT)
    if media not in _IMAGE_TYPES:
        raise RegistryError(f"{ref} is a {media or 'manifest of no type'}, not an image")
    document = json.loads(data)
    try:
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        for descriptor in [document["config"], *document.get("layers", [])]:
            _fetch(registry, layout, descriptor, reporter)
        digest = f"sha256:{_sha(data)}"
        (blobs / digest.split(":")[1]).write_bytes(data)
        entry = {
            "mediaType": media,
            "digest": digest,
            "size": len(data),
            "annotations": {"org.opencontainers.image.ref.name": ref.tag or "latest"},
        }
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry]}
        (layout / "index.json").write_text(json.dumps(index))
    except OSError as exc:
        raise output_error(layout, exc, "writing the image layout") from None
    return digest


def _envpack_manifest(ref: OciRef, media: str, data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError:
        raise RegistryError(f"{ref}: the registry's manifest is not JSON") from None
    if media in (INDEX_TYPE, DOCKER_LIST_TYPE):
        raise RegistryError(
            f"{ref} is an image index (several images), not an envpack "
            "environment; name an environment pushed by `envpack -o oci://…`"
        )
    kind = document.get("artifactType") or document.get("config", {}).get("mediaType")
    if media not in _IMAGE_TYPES or kind != ENV_ARTIFACT_TYPE:
        raise RegistryError(
            f"{ref} is not an envpack environment (its type is {kind or media or 'unknown'}, "
            f"not {ENV_ARTIFACT_TYPE}); name one pushed by `envpack -o oci://…`"
        )
    return dict(document)


def _layers(ref: OciRef, document: dict[str, Any], manifest: Manifest) -> dict[str, Any]:
    """Each layer by its member path, each checked against what envpack.json promises."""
    layers: dict[str, Any] = {}
    for layer in document.get("layers", []):
        name = str(layer.get("annotations", {}).get(TITLE, ""))
        listed = manifest.artifact_for(name)
        sbom = manifest.sbom if manifest.sbom is not None and manifest.sbom.path == name else None
        promised = listed or sbom
        if not is_plain_relative(name) or name in layers or name == MANIFEST_NAME:
            raise RegistryError(f"{ref}: layer path {name!r} is unsafe or repeated")
        if promised is not None and (layer.get("digest"), layer.get("size")) != (
            f"sha256:{promised.sha256}",
            promised.size or layer.get("size"),
        ):
            raise RegistryError(
                f"{ref}: layer {name} does not match envpack.json's sha256 "
                "and size; the artifact was altered"
            )
        if (
            promised is None
            and name not in (PIXI_PACK_NAME, ENVIRONMENT_YML)
            and not (is_repodata_path(name))
        ):
            raise RegistryError(f"{ref}: unexpected layer {name!r}, not in envpack.json")
        layers[name] = layer
    missing = [a.path for a in manifest.artifacts if a.path not in layers]
    if missing:
        raise RegistryError(f"{ref}: envpack.json lists {missing[0]} but no layer holds it")
    return layers


@contextmanager
def _store(cache: Path | None) -> Iterator[Path]:
    if cache is None:
        with tempfile.TemporaryDirectory(prefix="envunpack-pull-") as tmp:
            yield Path(tmp)
        return
    try:
        (cache / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(cache, exc, "creating the blob cache") from None
    yield cache


def _prune(store: Path, keep: set[str], reporter: Reporter) -> None:
    """Blobs this pull did not use go, so a fleet's cache holds one version, not all.

    Only finished blobs (64-hex names): another pull's `.part` file is left alone."""
    count = freed = 0
    for blob in (store / "blobs" / "sha256").iterdir():
        if len(blob.name) == 64 and blob.name not in keep:
            try:
                size = blob.stat().st_size
                blob.unlink()
            except FileNotFoundError:  # a concurrent prune took it
                continue
            except OSError as exc:  # the env is in place: a cache left fuller is no failure
                reporter.warn(f"cannot prune {blob}: {exc.strerror}")
                continue
            count, freed = count + 1, freed + size
    reporter.info(f"pruned {count} unused blobs ({freed / 1e6:.1f} MB) from {store}")


def _fetch(
    registry: Registry, store: Path, descriptor: dict[str, Any], reporter: Reporter, bar: Any = None
) -> Path:
    """The blob in the store, fetched unless a copy there still has the right sha256."""
    digest, size = str(descriptor.get("digest", "")), int(descriptor.get("size", -1))
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or not hexdigest.isalnum():
        raise RegistryError(f"{registry.ref}: unsupported blob digest {digest!r}")
    path = store / "blobs" / "sha256" / hexdigest
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        # A cache hit is verified again: a cache on disk is as trustworthy as the disk.
        if hash_file(path).sha256 == hexdigest:
            if bar is not None:
                bar.update(size)
            return path
        reporter.warn(f"cached blob {digest} is corrupt; fetching it again")
        path.unlink()
    registry.fetch_blob(digest, size, path, bar)
    return path


def _place(blob: Path, dest: Path) -> None:
    """A blob under its member name: a hard link (same directory tree), else a copy."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(blob, dest)
        except OSError:
            shutil.copyfile(blob, dest)
    except OSError as exc:
        raise output_error(dest.parent, exc, "writing the blob cache") from None


def _platform_entry(ref: OciRef, index: dict[str, Any], platform: str | None) -> str:
    entries = index.get("manifests", [])
    if platform is not None:
        os_name, _, arch = platform.partition("/")
        entries = [
            e
            for e in entries
            if e.get("platform", {}).get("os") == os_name
            and e.get("platform", {}).get("architecture") == arch
        ]
    if len(entries) != 1:
        raise RegistryError(
            f"{ref} is an index of {len(entries)} matching images; "
            "name a platform (e.g. linux/amd64) or one image's digest"
        )
    return str(entries[0]["digest"])


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()

"""`envpack.json` and `pixi-pack.json`: to and from JSON, with format versions checked first."""

from __future__ import annotations

import json
import re
from typing import Any

from envpack import __version__
from envpack.core.errors import ArchiveError
from envpack.core.layout import CHANNEL_DIR, MANIFEST_NAME, PIXI_PACK_NAME, PYPI_DIR, SBOM_NAME
from envpack.core.models import Artifact, Listed, Manifest

# 2 added sbom.cdx.json, listed in the manifest. Readers of version 1 refuse any member they
# do not know ("unexpected archive member"), so a new archive must tell them it is newer.
FORMAT_VERSION = 2
# Version 1 archives (no SBOM) are still read.
READABLE_VERSIONS = (1, 2)
PIXI_PACK_FORMAT = "1"
# The pixi-pack release whose archive layout we reproduce; pixi-unpack only warns on a mismatch.
PIXI_PACK_COMPAT_VERSION = "0.7.0"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
# Archive paths are checked again by the archive reader; this keeps the manifest itself sane.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.+!-][A-Za-z0-9_.+!,=~-]*")


def manifest_to_json(manifest: Manifest) -> bytes:
    doc = {
        "format_version": manifest.format_version,
        "envpack_version": manifest.envpack_version,
        "platform": manifest.platform,
        "environment": manifest.environment,
        "lock_sha256": manifest.lock_sha256,
        "virtual_packages": list(manifest.virtual_packages),
        "artifacts": [artifact_to_json(a) for a in manifest.artifacts],
    }
    if manifest.sbom is not None:
        sbom = manifest.sbom
        doc["sbom"] = {"path": sbom.path, "sha256": sbom.sha256, "size": sbom.size}
    # sort_keys and a fixed indent: the manifest is part of the reproducible archive bytes.
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def artifact_to_json(artifact: Artifact) -> dict[str, Any]:
    """One artifact as the manifest and every `--json` output spell it."""
    doc: dict[str, Any] = {
        "path": artifact.path,
        "kind": artifact.kind,
        "name": artifact.name,
        "version": artifact.version,
        "build": artifact.build,
        "sha256": artifact.sha256,
        "size": artifact.size,
    }
    if artifact.md5:
        doc["md5"] = artifact.md5
    return doc


def manifest_from_json(data: bytes) -> Manifest:
    """Parse `envpack.json`. Unknown fields are ignored; an unknown format_version is refused."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ArchiveError(f"{MANIFEST_NAME} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ArchiveError(f"{MANIFEST_NAME} must be a JSON object")
    version = doc.get("format_version")
    # type() check: JSON true and 1.0 compare equal to 1 but are not version 1.
    if type(version) is not int or version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise ArchiveError(
            f"archive format version {version!r} is not supported by envpack {__version__} "
            f"(it reads versions {readable}); use the envunpack that made it or a newer one"
        )
    artifacts = doc.get("artifacts")
    if not isinstance(artifacts, list):
        raise ArchiveError(f"{MANIFEST_NAME}: 'artifacts' must be a list")
    vpkgs = doc.get("virtual_packages", [])
    if not isinstance(vpkgs, list) or not all(isinstance(v, str) for v in vpkgs):
        raise ArchiveError(f"{MANIFEST_NAME}: 'virtual_packages' must be a list of strings")
    parsed = tuple(_artifact_from_json(a) for a in artifacts)
    paths = [a.path for a in parsed]
    if len(set(paths)) != len(paths):
        raise ArchiveError(f"{MANIFEST_NAME} lists an artifact path twice")
    # Version 1 knew no SBOM: there the field is unknown, hence ignored (and the member refused).
    sbom = _sbom_from_json(doc.get("sbom")) if version >= 2 and "sbom" in doc else None
    return Manifest(
        format_version=version,
        envpack_version=_str(doc, "envpack_version"),
        platform=_str(doc, "platform"),
        environment=_str(doc, "environment"),
        lock_sha256=_str(doc, "lock_sha256"),
        virtual_packages=tuple(vpkgs),
        artifacts=parsed,
        sbom=sbom,
    )


def _sbom_from_json(doc: object) -> Listed:
    if not isinstance(doc, dict):
        raise ArchiveError(f"{MANIFEST_NAME}: 'sbom' must be an object")
    path, sha256, size = doc.get("path"), doc.get("sha256"), doc.get("size")
    # One fixed name: the manifest cannot make the reader treat another member as the SBOM.
    if path != SBOM_NAME:
        raise ArchiveError(f"{MANIFEST_NAME}: the SBOM must be {SBOM_NAME!r}, not {path!r}")
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise ArchiveError(f"{MANIFEST_NAME}: the SBOM lacks a valid sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArchiveError(f"{MANIFEST_NAME}: the SBOM lacks a valid size")
    return Listed(path=path, sha256=sha256, size=size)


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise ArchiveError(f"{MANIFEST_NAME}: '{key}' must be a string")
    return value


def _optional_str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ArchiveError(f"{MANIFEST_NAME}: '{key}' must be a string")
    return value


def _artifact_from_json(doc: object) -> Artifact:
    if not isinstance(doc, dict):
        raise ArchiveError(f"{MANIFEST_NAME}: each artifact must be an object")
    kind = doc.get("kind")
    path = _str(doc, "path")
    sha256 = doc.get("sha256")
    size = doc.get("size")
    md5 = doc.get("md5")
    if kind not in ("conda", "wheel"):
        raise ArchiveError(f"{MANIFEST_NAME}: artifact {path!r} has unknown kind {kind!r}")
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise ArchiveError(f"{MANIFEST_NAME}: artifact {path!r} lacks a valid sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArchiveError(f"{MANIFEST_NAME}: artifact {path!r} lacks a valid size")
    if md5 is not None and (not isinstance(md5, str) or not _HEX32.fullmatch(md5)):
        raise ArchiveError(f"{MANIFEST_NAME}: artifact {path!r} has an invalid md5")
    parts = path.split("/")
    if kind == "conda":
        valid = len(parts) == 3 and parts[0] == CHANNEL_DIR
        subdir, filename = (parts[1], parts[2]) if valid else ("", "")
    else:
        valid = len(parts) == 2 and parts[0] == PYPI_DIR
        subdir, filename = "", parts[-1]
    # Only plain names below channel/<subdir>/ or pypi/: nothing can point elsewhere.
    if not valid or not all(_SAFE_NAME.fullmatch(p) for p in parts) or {".", ".."} & set(parts):
        raise ArchiveError(f"{MANIFEST_NAME}: artifact path {path!r} is not allowed")
    artifact = Artifact(
        kind=kind,
        name=_str(doc, "name"),
        version=_str(doc, "version"),
        build=_optional_str(doc, "build"),
        filename=filename,
        subdir=subdir,
        sha256=sha256,
        md5=md5,
        size=size,
    )
    return artifact


def pixi_pack_json(platform: str) -> bytes:
    doc = {
        "version": PIXI_PACK_FORMAT,
        "pixi-pack-version": PIXI_PACK_COMPAT_VERSION,
        "platform": platform,
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def pixi_pack_platform(data: bytes) -> str:
    """Validate a pixi-pack archive's metadata and return its platform."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ArchiveError(f"{PIXI_PACK_NAME} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != PIXI_PACK_FORMAT:
        version = doc.get("version") if isinstance(doc, dict) else None
        raise ArchiveError(f"unsupported pixi-pack archive version {version!r} (expected '1')")
    platform = doc.get("platform")
    if not isinstance(platform, str):
        raise ArchiveError(f"{PIXI_PACK_NAME}: 'platform' must be a string")
    return platform

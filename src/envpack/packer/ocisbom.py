"""An image's SBOM as an OCI referrer, so `oras discover` and registry UIs list it with it.

OCI 1.1 ties an artifact to an image by the `subject` of the artifact's manifest. Registries
without the referrers API (distribution 2.8 among them) are served by the spec's fallback
as well: an image index under the tag `sha256-<the image's digest hex>` listing the
referrers, which clients read when the API is missing. Both are written; pushing the same
image again gives the same manifests and the same index.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from envpack.core.layout import SBOM_NAME
from envpack.core.ociref import INDEX_TYPE, MANIFEST_TYPE, TITLE
from envpack.packer.registrypush import PushSession

SBOM_MEDIA = "application/vnd.cyclonedx+json"
# The spec's empty descriptor: an artifact with no config of its own.
EMPTY_MEDIA = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"


def push_sbom_referrer(registry: PushSession, subject: dict[str, object], sbom: bytes) -> str:
    """Push `sbom` as a referrer of the manifest `subject` describes; returns its digest."""
    with tempfile.TemporaryDirectory(prefix="envpack-sbom-") as tmp:
        for name, data, media in (("config", EMPTY, EMPTY_MEDIA), ("sbom", sbom, SBOM_MEDIA)):
            path = Path(tmp) / name
            path.write_bytes(data)
            registry.push_blob(path, _digest(data), media)
    manifest = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": SBOM_MEDIA,
            "config": {"mediaType": EMPTY_MEDIA, "digest": _digest(EMPTY), "size": len(EMPTY)},
            "layers": [
                {
                    "mediaType": SBOM_MEDIA,
                    "digest": _digest(sbom),
                    "size": len(sbom),
                    "annotations": {TITLE: SBOM_NAME},
                }
            ],
            "subject": subject,
        }
    )
    digest = registry.put_manifest(manifest, MANIFEST_TYPE, _digest(manifest))
    entry = {
        "mediaType": MANIFEST_TYPE,
        "digest": digest,
        "size": len(manifest),
        "artifactType": SBOM_MEDIA,
    }
    tag = "sha256-" + str(subject["digest"]).removeprefix("sha256:")
    found = registry.find_manifest(tag, (INDEX_TYPE,))
    listed = json.loads(found[1]).get("manifests", []) if found else []
    others = [m for m in listed if isinstance(m, dict) and m.get("digest") != digest]
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [*others, entry]}
    registry.put_manifest(_canonical(index), INDEX_TYPE, tag)
    return digest


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

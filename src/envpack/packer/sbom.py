"""`sbom.cdx.json`: a CycloneDX 1.6 SBOM of exactly what an archive ships.

Built with cyclonedx-python-lib and packageurl-python, never by hand. Reproducible: no
timestamp, every bom-ref chosen here, and a serial number derived from the rest of the
document, so the same artifacts always give the same bytes.

The packer imports this module; the frozen envunpack does not bundle cyclonedx at all and
only loads it (lazily) to describe a pixi-pack archive, which carries no SBOM of its own.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from urllib.parse import urlsplit

import rattler
from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.dependency import Dependency
from cyclonedx.model.license import License
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from envpack import __version__
from envpack.core.models import Artifact
from envpack.packer.sbomitems import Item, Subject, plan_items
from envpack.packer.urls import redact, strip_credentials

# What an SBOM is made of lives in sbomitems (no cyclonedx there); it is used from here too.
__all__ = ["Item", "Subject", "channel_of", "plan_items", "purl", "sbom_json"]

# Namespace of the serial numbers: uuid5 over the document's own digest.
_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/envpack/envpack/sbom")
# The nil UUID stands in for the serial while the digest it is derived from is computed.
_NIL = uuid.UUID(int=0)
_ROOT_REF = "envpack:environment"


def sbom_json(items: Iterable[Item], subject: Subject, tool_version: str = __version__) -> bytes:
    """The SBOM document as the bytes that go into the archive."""
    bom = _bom(list(items), subject, tool_version)
    bom.serial_number = _NIL
    draft = _render(bom)
    # Derived from the content: equal documents get equal serials, different ones differ.
    serial = uuid.uuid5(_SERIAL_NAMESPACE, hashlib.sha256(draft).hexdigest())
    # The serial is a fixed-width string the document holds once: put it in the draft's
    # place instead of rendering again (a third of a warm pack's SBOM time). Anything else
    # holding the nil UUID is rendered again, as the library would.
    nil = f'"{_NIL.urn}"'.encode()
    if draft.count(nil) == 1:
        return draft.replace(nil, f'"{serial.urn}"'.encode())
    bom.serial_number = serial
    return _render(bom)


def purl(artifact: Artifact, url: str | None) -> PackageURL:
    if artifact.kind == "wheel":
        return PackageURL(type="pypi", name=artifact.name, version=artifact.version)
    qualifiers = {"build": artifact.build, "subdir": artifact.subdir}
    channel = channel_of(url, artifact) if url else None
    if channel:
        qualifiers["channel"] = channel
    return PackageURL(
        type="conda", name=artifact.name, version=artifact.version, qualifiers=qualifiers
    )


def channel_of(url: str, artifact: Artifact) -> str | None:
    """The channel: the download URL minus `/<subdir>/<file>`, without any credentials
    (a token or password is no part of a channel's identity)."""
    suffix = f"/{artifact.subdir}/{artifact.filename}"
    clean = strip_credentials(url)[0]
    return clean[: -len(suffix)] if clean.endswith(suffix) else None


# --- the document ------------------------------------------------------------------------------


def _bom(items: list[Item], subject: Subject, tool_version: str) -> Bom:
    bom = Bom()
    # No timestamp: the moment of packing would make every archive's bytes differ.
    bom.metadata.timestamp = None  # type: ignore[assignment]
    tool = Component(
        type=ComponentType.APPLICATION,
        name="envpack",
        version=tool_version,
        bom_ref=f"pkg:pypi/envpack@{tool_version}",
        purl=PackageURL(type="pypi", name="envpack", version=tool_version),
    )
    bom.metadata.tools = ToolRepository(components=[tool])
    properties = [
        Property(name="envpack:platform", value=subject.platform),
        Property(name="envpack:source", value=subject.source),
    ]
    if subject.lock_sha256:
        properties.append(Property(name="envpack:lock_sha256", value=subject.lock_sha256))
    bom.metadata.component = Component(
        type=ComponentType.APPLICATION,
        name=subject.environment,
        bom_ref=_ROOT_REF,
        properties=properties,
    )
    components = [_component(item) for item in items]
    bom.components = components
    # Conda names are unique in a solved env, so a depends entry's name is its edge.
    by_name = {
        i.artifact.name: c.bom_ref
        for c, i in zip(components, items, strict=True)
        if i.artifact.kind == "conda"
    }
    # The environment contains every artifact; each artifact depends on what its record says.
    graph = [
        Dependency(
            ref=bom.metadata.component.bom_ref,
            dependencies=[Dependency(ref=c.bom_ref) for c in components],
        )
    ]
    for component, item in zip(components, items, strict=True):
        edges = {n: by_name[n] for n in _depends(item) if n in by_name}
        graph.append(
            Dependency(
                ref=component.bom_ref,
                dependencies=[Dependency(ref=edges[n]) for n in sorted(edges)],
            )
        )
    bom.dependencies = graph
    return bom


def _component(item: Item) -> Component:
    artifact = item.artifact
    # A local file is no distribution point, and its path is the packing machine's business.
    url = item.url if item.url and urlsplit(item.url).scheme not in ("", "file") else None
    package_url = purl(artifact, url)
    hashes = []
    if artifact.sha256:
        hashes.append(HashType(alg=HashAlgorithm.SHA_256, content=artifact.sha256))
    if artifact.md5:
        hashes.append(HashType(alg=HashAlgorithm.MD5, content=artifact.md5))
    references = []
    if url:
        references.append(
            ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(redact(url)))
        )
    properties = [Property(name="envpack:path", value=artifact.path)]
    if item.injected:
        properties.append(Property(name="envpack:injected", value="true"))
    return Component(
        type=ComponentType.LIBRARY,
        name=artifact.name,
        version=artifact.version,
        bom_ref=package_url.to_string(),
        purl=package_url,
        hashes=hashes,
        licenses=_licenses(item.record.get("license")),
        external_references=references,
        properties=properties,
    )


def _licenses(value: object) -> list[License]:
    # A record without a license (many locks have some) still gets its component.
    if not isinstance(value, str) or not value.strip():
        return []
    return [LicenseFactory().make_from_string(value.strip())]


def _depends(item: Item) -> list[str]:
    """Names of the conda packages an item depends on; virtual packages are the host's."""
    depends = item.record.get("depends", [])
    names = []
    for spec in depends if isinstance(depends, list) else []:
        text = str(spec)
        if text.startswith("__"):
            continue
        try:
            name = rattler.MatchSpec(text).name
        except Exception:  # noqa: BLE001, S112 - a spec rattler cannot read names no edge
            continue
        if name is not None:
            names.append(name.normalized)
    return names


def _render(bom: Bom) -> bytes:
    return (JsonV1Dot6(bom).output_as_string(indent=2) + "\n").encode()

"""envpack.packer.ocisbom called directly against a real docker-registry on 127.0.0.1: an SBOM
pushed as the OCI 1.1 referrer of an image pushed with push_layout, and the `sha256-<hex>`
referrers-tag index, read back with skopeo as any client would."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devtools.registries import PlainRegistry
from envpack.core.archive import iter_members
from envpack.core.layout import SBOM_NAME
from envpack.core.ociref import INDEX_TYPE, MANIFEST_TYPE, TITLE, parse_ref
from envpack.core.progress import SilentReporter
from envpack.packer.ocipush import push_layout
from envpack.packer.ocisbom import EMPTY, EMPTY_MEDIA, SBOM_MEDIA, push_sbom_referrer
from envpack.packer.registrypush import PushSession
from tests.ocifixtures import image_layout, registry

__all__ = ["registry"]  # a fixture, used by name


def raw(registry: PlainRegistry, ref: str) -> bytes:
    """A manifest's exact bytes as a standard tool reads them: `skopeo inspect --raw`."""
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo)")
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{ref}"],
        capture_output=True,
        check=True,
    ).stdout


def doc(registry: PlainRegistry, ref: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(raw(registry, ref))
    return parsed


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sbom_of(archive: Path) -> bytes:
    with archive.open("rb") as fh:
        return next(m.stream.read() for m in iter_members(fh) if m.name == SBOM_NAME)


@pytest.fixture(scope="module")
def sboms(archives: dict[str, Path]) -> tuple[bytes, bytes]:
    """Two real, different SBOMs: of the fixture env for this host and for aarch64."""
    first, second = sbom_of(archives["zstd"]), sbom_of(archives["aarch64"])
    assert first != second
    return first, second


def pushed_image(
    registry: PlainRegistry, tmp_path: Path, repo: str
) -> tuple[PushSession, dict[str, object]]:
    """The one-layer image layout pushed to `repo:1`; its session and its descriptor."""
    layout, digest = image_layout(tmp_path / "layout")
    ref = parse_ref(f"oci://{registry.host}/{repo}:1")
    pushed = push_layout(layout, PushSession(ref, True, SilentReporter()))
    assert pushed.digest == digest
    size = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).stat().st_size
    subject: dict[str, object] = {"mediaType": MANIFEST_TYPE, "digest": digest, "size": size}
    return PushSession(ref, True, SilentReporter()), subject


def referrers_tag(subject: dict[str, object]) -> str:
    return "sha256-" + str(subject["digest"]).removeprefix("sha256:")


def test_the_referrer_points_at_the_image_and_carries_the_sbom(
    registry: PlainRegistry, tmp_path: Path, sboms: tuple[bytes, bytes]
) -> None:
    session, subject = pushed_image(registry, tmp_path, "sbom/one")
    sbom = sboms[0]
    digest = push_sbom_referrer(session, subject, sbom)
    served = raw(registry, f"sbom/one@{digest}")
    assert sha256(served) == digest  # what was returned is the digest of what is stored
    referrer = json.loads(served)
    assert referrer["mediaType"] == MANIFEST_TYPE
    assert referrer["artifactType"] == SBOM_MEDIA
    assert referrer["subject"] == subject
    assert referrer["config"] == {"mediaType": EMPTY_MEDIA, "digest": sha256(EMPTY), "size": 2}
    (layer,) = referrer["layers"]
    assert layer == {
        "mediaType": SBOM_MEDIA,
        "digest": sha256(sbom),
        "size": len(sbom),
        "annotations": {TITLE: SBOM_NAME},
    }
    # The blobs are in the registry's store, byte for byte.
    assert registry.blob_file(layer["digest"]).read_bytes() == sbom
    assert registry.blob_file(sha256(EMPTY)).read_bytes() == b"{}"
    # The image itself is untouched: its tag still names it.
    assert sha256(raw(registry, "sbom/one:1")) == subject["digest"]


def test_the_referrers_tag_holds_an_index_listing_it(
    registry: PlainRegistry, tmp_path: Path, sboms: tuple[bytes, bytes]
) -> None:
    session, subject = pushed_image(registry, tmp_path, "sbom/tag")
    digest = push_sbom_referrer(session, subject, sboms[0])
    index = doc(registry, f"sbom/tag:{referrers_tag(subject)}")
    size = len(raw(registry, f"sbom/tag@{digest}"))
    assert index == {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            {"mediaType": MANIFEST_TYPE, "digest": digest, "size": size, "artifactType": SBOM_MEDIA}
        ],
    }


def test_the_same_sbom_twice_keeps_one_entry_and_another_adds_one(
    registry: PlainRegistry, tmp_path: Path, sboms: tuple[bytes, bytes]
) -> None:
    session, subject = pushed_image(registry, tmp_path, "sbom/again")
    tag = f"sbom/again:{referrers_tag(subject)}"
    first = push_sbom_referrer(session, subject, sboms[0])
    before = raw(registry, tag)
    assert push_sbom_referrer(session, subject, sboms[0]) == first
    assert raw(registry, tag) == before  # the same index, byte for byte
    second = push_sbom_referrer(session, subject, sboms[1])
    assert second != first
    listed = doc(registry, tag)["manifests"]
    assert [m["digest"] for m in listed] == [first, second]  # the older entry kept, first
    referrer = doc(registry, f"sbom/again@{second}")
    assert referrer["subject"] == subject
    assert referrer["layers"][0]["digest"] == sha256(sboms[1])
    # Pushing the first again does not list it twice.
    assert push_sbom_referrer(session, subject, sboms[0]) == first
    assert sorted(m["digest"] for m in doc(registry, tag)["manifests"]) == sorted([first, second])


def test_entries_the_index_already_had_are_kept(
    registry: PlainRegistry, tmp_path: Path, sboms: tuple[bytes, bytes]
) -> None:
    """Another tool's referrer, listed in the tag before envpack's, stays listed."""
    session, subject = pushed_image(registry, tmp_path, "sbom/foreign")
    theirs = push_sbom_referrer(session, subject, sboms[1])
    tag = f"sbom/foreign:{referrers_tag(subject)}"
    index = doc(registry, tag)
    index["manifests"][0]["artifactType"] = "application/vnd.example.signature"
    session.put_manifest(json.dumps(index).encode(), INDEX_TYPE, referrers_tag(subject))
    ours = push_sbom_referrer(session, subject, sboms[0])
    listed = doc(registry, tag)["manifests"]
    assert [(m["digest"], m["artifactType"]) for m in listed] == [
        (theirs, "application/vnd.example.signature"),
        (ours, SBOM_MEDIA),
    ]

"""The writing half of a registry session (packer/registrypush.py) against Debian's real
docker-registry 2.8: blobs mounted from another repository where the registry allows it,
uploaded where it does not, with what went over the wire read from the registry's log."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from devtools.registries import PlainRegistry
from envpack.core.ociref import MANIFEST_TYPE, parse_ref
from envpack.core.progress import SilentReporter
from envpack.packer.registrypush import PushSession
from tests.ocifixtures import (
    Project,
    bearer_registry,
    blob_digests,
    docker_config,
    manifest_of,
    project,
    push,
    pushed,
    registry,
)

__all__ = ["bearer_registry", "project", "registry"]  # fixtures, used by name


def _session(reg: PlainRegistry, repo: str, *mount_from: str) -> PushSession:
    return PushSession(parse_ref(f"oci://{reg.host}/{repo}:t"), True, SilentReporter(), mount_from)


def _blob(tmp: Path, data: bytes) -> tuple[Path, str]:
    path = tmp / hashlib.sha256(data).hexdigest()[:12]
    path.write_bytes(data)
    return path, f"sha256:{hashlib.sha256(data).hexdigest()}"


def test_a_blob_of_another_repository_is_mounted_not_sent(
    registry: PlainRegistry, tmp_path: Path
) -> None:
    path, digest = _blob(tmp_path, b"mounted, not sent\n" * 4000)
    assert _session(registry, "mnt/source").push_blob(path, digest, "text/plain")
    since = len(registry.access())
    target = _session(registry, "mnt/target", "mnt/source")
    assert target.push_blob(path, digest, "text/plain") is False
    assert (target.traffic.blobs_mounted, target.traffic.uploaded) == (1, 0)
    assert registry.mounts(since) == [digest]
    assert registry.uploaded_bytes(since) == 0
    fetched = tmp_path / "fetched"
    target.fetch_blob(digest, path.stat().st_size, fetched)
    assert fetched.read_bytes() == path.read_bytes()


def test_a_refused_mount_falls_back_to_the_upload(registry: PlainRegistry, tmp_path: Path) -> None:
    path, digest = _blob(tmp_path, b"nowhere else yet\n" * 3000)
    since = len(registry.access())
    # The first repository has no such blob, the second does not exist: both answer 202.
    target = _session(registry, "mnt/fallback", "mnt/source", "mnt/absent")
    assert target.push_blob(path, digest, "text/plain") is True
    posts = [a for a in registry.access(since) if a.method == "POST" and "mount=" in a.path]
    assert [a.status for a in posts] == [202, 202]
    assert registry.mounts(since) == []
    assert registry.uploads(since) == [digest]
    assert target.traffic.uploaded == registry.uploaded_bytes(since) == path.stat().st_size
    assert target.push_blob(path, digest, "text/plain") is False  # then HEAD finds it


def test_a_per_blob_source_is_tried_first_and_its_own_repo_never(
    registry: PlainRegistry, tmp_path: Path
) -> None:
    path, digest = _blob(tmp_path, b"per-blob source\n" * 2000)
    _session(registry, "mnt/base").push_blob(path, digest, "text/plain")
    since = len(registry.access())
    target = _session(registry, "mnt/app", "mnt/app")  # its own repository: no mount asked
    assert target.push_blob(path, digest, "text/plain", ["mnt/app", "mnt/base"]) is False
    posts = [a.path for a in registry.access(since) if a.method == "POST"]
    assert len(posts) == 1 and "from=mnt%2Fbase" in posts[0]
    assert registry.mounts(since) == [digest]


def test_a_token_login_mounts_with_the_scope_the_registry_asks(
    bearer_registry: PlainRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mount needs pull on its source as well: distribution's challenge names both
    repositories, and the token asked for is the challenge's scope, not this repository's."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bearer_registry.ca))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(docker_config(tmp_path / "c", bearer_registry)))
    path, digest = _blob(tmp_path, b"behind a token, twice\n" * 1000)
    _session(bearer_registry, "tok/source").push_blob(path, digest, "text/plain")
    since = len(bearer_registry.access())
    target = _session(bearer_registry, "tok/target", "tok/source")
    assert target.push_blob(path, digest, "text/plain") is False
    assert (target.traffic.blobs_mounted, target.traffic.blobs_uploaded) == (1, 0)
    assert bearer_registry.mounts(since) == [digest]
    assert bearer_registry.uploaded_bytes(since) == 0
    target.fetch_blob(digest, path.stat().st_size, tmp_path / "down")
    assert (tmp_path / "down").read_bytes() == path.read_bytes()


def test_manifests_put_as_their_bytes_and_found_or_not(
    registry: PlainRegistry, tmp_path: Path
) -> None:
    session = _session(registry, "mnt/manifests")
    config, config_digest = _blob(tmp_path, b"{}")
    session.push_blob(config, config_digest, "application/vnd.oci.empty.v1+json")
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": config_digest,
            "size": 2,
        },
        "layers": [],
    }
    data = json.dumps(doc, indent=2).encode()
    assert session.find_manifest("m1", (MANIFEST_TYPE,)) is None
    digest = session.put_manifest(data, MANIFEST_TYPE, "m1")
    assert digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert session.find_manifest("m1", (MANIFEST_TYPE,)) == (MANIFEST_TYPE, data)


def test_mount_from_sends_only_what_the_other_repository_lacks(
    project: Project, registry: PlainRegistry
) -> None:
    """`envpack -o oci://…/fleet-b/env:v2 --mount-from fleet-a/env`: v1 went to fleet-a; v2 to
    a new repository mounts every blob fleet-a has and uploads only the changed ones."""
    pushed(project, f"oci://{registry.host}/fleet-a/env:v1")
    since = len(registry.access())
    ref = f"oci://{registry.host}/fleet-b/env:v2"
    result = push(project, ref, "--mount-from", "fleet-a/env", v2=True)
    assert result.returncode == 0, result.stderr.decode()
    v1 = blob_digests(manifest_of(registry, "fleet-a/env:v1"))
    v2 = blob_digests(manifest_of(registry, "fleet-b/env:v2"))
    said = result.stderr.decode().splitlines()[-1]
    shared = len(set(v2) & set(v1))
    assert said.endswith(f"; 0 already there, {shared} mounted)"), said
    assert set(registry.mounts(since)) == set(v2) & set(v1)
    assert set(registry.uploads(since)) == set(v2) - set(v1)
    assert registry.uploaded_bytes(since) == sum(v2[d] for d in set(v2) - set(v1))
    assert registry.uploaded_bytes(since) < sum(v2.values()) / 10

"""The registry session (python-dxf underneath) against Debian's real docker-registry."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.registries import PlainRegistry
from devtools.serverproc import free_port
from envpack.core.errors import RegistryError
from envpack.core.ociref import MANIFEST_TYPE, parse_ref
from envpack.core.progress import SilentReporter
from envpack.packer.registrypush import PushSession
from envpack.target.registry import Registry, credential_files
from tests.ocifixtures import (
    auth_registry,
    bearer_registry,
    docker_config,
    helper_program,
    registry,
    secrets,
)

__all__ = ["auth_registry", "bearer_registry", "registry"]  # fixtures, used by name


def _session(reg: PlainRegistry, repo: str = "unit/blobs", **kw: bool) -> PushSession:
    """A session that can also write (packer/registrypush.py): these tests push what they
    read back, and the token scope of a write is this session's business too."""
    ref = parse_ref(f"oci://{reg.host}/{repo}:t")
    return PushSession(ref, kw.get("insecure", True), SilentReporter())


def test_credential_files_follow_podman_and_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert credential_files() == []
    home = tmp_path / "home" / ".docker" / "config.json"
    home.parent.mkdir(parents=True)
    home.write_text("{}")
    assert credential_files() == [str(home)]
    auth = tmp_path / "auth.json"
    auth.write_text("{}")
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text("{}")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    assert credential_files() == [str(auth), str(tmp_path / "docker" / "config.json"), str(home)]
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "absent.json"))
    assert credential_files() == [str(tmp_path / "docker" / "config.json"), str(home)]


def test_blobs_go_up_once_and_come_down_verified(registry: PlainRegistry, tmp_path: Path) -> None:
    session = _session(registry)
    data = b"a blob\n" * 1000
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert session.push_blob(path, digest, "application/octet-stream") is True
    assert session.push_blob(path, digest, "application/octet-stream") is False  # HEAD said so
    assert (session.traffic.blobs_uploaded, session.traffic.blobs_present) == (1, 1)
    assert session.traffic.uploaded == len(data)
    dest = tmp_path / "down"
    session.fetch_blob(digest, len(data), dest)
    assert dest.read_bytes() == data
    assert session.traffic.downloaded == len(data)
    # A registry that sends more than the manifest promised is cut off and refused.
    with pytest.raises(RegistryError, match="served wrong bytes"):
        session.fetch_blob(digest, len(data) - 1, tmp_path / "short")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "down"]
    with pytest.raises(RegistryError, match="answered 404 for blob"):
        session.fetch_blob("sha256:" + "0" * 64, 1, tmp_path / "none")


def test_manifests_keep_their_exact_bytes(registry: PlainRegistry, tmp_path: Path) -> None:
    session = _session(registry, "unit/manifest")
    empty = b"{}"
    config = f"sha256:{hashlib.sha256(empty).hexdigest()}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [],
    }
    blob = tmp_path / "empty-blob"
    blob.write_bytes(empty)
    session.push_blob(blob, config, "application/vnd.oci.empty.v1+json")
    data = json.dumps(manifest, indent=3).encode()  # deliberately not canonical
    digest = session.put_manifest(data, MANIFEST_TYPE, "t")
    assert digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert session.get_manifest("t", (MANIFEST_TYPE,)) == (MANIFEST_TYPE, data)
    assert session.get_manifest(digest, (MANIFEST_TYPE,))[1] == data
    with pytest.raises(RegistryError, match="has no tag or digest 'nope' \\(404\\)"):
        session.get_manifest("nope", (MANIFEST_TYPE,))


def test_unreachable_and_wrong_scheme_fail_fast(registry: PlainRegistry) -> None:
    start = time.monotonic()
    closed = parse_ref(f"oci://127.0.0.1:{free_port()}/env:v1")
    with pytest.raises(RegistryError, match=r"cannot reach the registry 127\.0\.0\.1:") as info:
        Registry(closed, insecure=True, reporter=SilentReporter())
    assert "check the host and port" in str(info.value)
    assert time.monotonic() - start < 15  # no retry back-off
    with pytest.raises(RegistryError, match="plain-HTTP registry needs --insecure"):
        _session(registry, insecure=False)


def test_basic_auth_challenge_answered_from_credential_files(
    auth_registry: PlainRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    with pytest.raises(RegistryError, match="needs credentials \\(401\\)"):
        _session(auth_registry)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(broken))
    with pytest.raises(RegistryError, match=r"broken\.json is not JSON"):
        _session(auth_registry)
    wrong = docker_config(tmp_path / "wrong", auth_registry, password="nope-nope")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(wrong))
    with pytest.raises(RegistryError, match="refused the credentials") as info:
        _session(auth_registry)
    assert "nope-nope" not in str(info.value)
    good = docker_config(tmp_path / "good", auth_registry)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(good))
    session = _session(auth_registry)
    data = b"private"
    (tmp_path / "b").write_bytes(data)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert session.push_blob(tmp_path / "b", digest, "application/octet-stream")
    assert all(secret not in repr(session.traffic) for secret in secrets(auth_registry))


def test_a_login_in_a_credential_helper_is_asked_for_only_when_needed(
    registry: PlainRegistry,
    auth_registry: PlainRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    asked = tmp_path / "asked"
    helpers = tmp_path / "bin"
    helper_program(helpers / "docker-credential-unit", auth_registry, asked)
    monkeypatch.setenv("PATH", f"{helpers}:{os.environ['PATH']}")
    config = tmp_path / "config.json"
    # What `docker login` leaves with a credsStore: an empty entry; the login is in the store.
    config.write_text(json.dumps({"auths": {auth_registry.host: {}}, "credsStore": "unit"}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(config))
    data = b"kept by a helper"
    (tmp_path / "b").write_bytes(data)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    session = _session(auth_registry)
    assert session.push_blob(tmp_path / "b", digest, "text/plain")
    assert asked.read_text() == auth_registry.host
    assert all(secret not in repr(session.traffic) for secret in secrets(auth_registry))
    config.write_text(json.dumps({"credHelpers": {auth_registry.host: "envpack-absent"}}))
    with pytest.raises(RegistryError, match="docker-credential-envpack-absent") as info:
        _session(auth_registry)
    assert "not on PATH" in str(info.value) and str(config) in str(info.value)
    # A registry that asks for no login never runs the helper, nor reads the auth file.
    asked.unlink()
    config.write_text(json.dumps({"credHelpers": {registry.host: "unit"}}))
    _session(registry, "unit/helper").push_blob(tmp_path / "b", digest, "text/plain")
    config.write_text("{not json")
    _session(registry, "unit/helper").fetch_blob(digest, len(data), tmp_path / "down")
    assert (tmp_path / "down").read_bytes() == data
    assert not asked.exists()


def test_bearer_challenge_gets_a_token_per_scope(
    bearer_registry: PlainRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bearer_registry.ca))  # the token server's
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(docker_config(tmp_path / "good", bearer_registry)))
    session = _session(bearer_registry, "unit/bearer")
    data = b"behind a token"
    (tmp_path / "b").write_bytes(data)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert session.push_blob(tmp_path / "b", digest, "application/octet-stream")  # pull,push
    session.fetch_blob(digest, len(data), tmp_path / "down")
    assert (tmp_path / "down").read_bytes() == data
    # A second session only pulls: its first token is for pulling, and that is enough.
    reader = _session(bearer_registry, "unit/bearer")
    reader.fetch_blob(digest, len(data), tmp_path / "again")
    start = time.monotonic()
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with pytest.raises(RegistryError, match=r"cannot get a token for .* from its token server"):
        _session(bearer_registry, "unit/bearer")  # its certificate is from an unknown CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bearer_registry.ca))
    wrong = docker_config(tmp_path / "wrong", bearer_registry, password="bad-bearer-pw")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(wrong))
    with pytest.raises(RegistryError, match="refused the credentials \\(token denied\\)") as info:
        _session(bearer_registry, "unit/bearer")
    assert "bad-bearer-pw" not in str(info.value)
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    with pytest.raises(RegistryError, match="needs credentials \\(token denied\\)"):
        _session(bearer_registry, "unit/bearer")
    assert time.monotonic() - start < 15  # one line at once, no retry back-off


def test_no_charset_detector_needed_and_nothing_said(
    registry: PlainRegistry, tmp_path: Path
) -> None:
    """requests runs without charset_normalizer (a frozen build may leave it out): registry
    bodies are read as bytes, and its warning about the missing detector is not shown."""
    data = tmp_path / "blob"
    data.write_bytes(b"no detector\n")
    digest = f"sha256:{hashlib.sha256(data.read_bytes()).hexdigest()}"
    code = f"""
import sys
sys.modules["charset_normalizer"] = None
sys.modules["chardet"] = None
from pathlib import Path
from envpack.core.ociref import parse_ref
from envpack.core.progress import SilentReporter
from envpack.packer.registrypush import PushSession
session = PushSession(parse_ref("oci://{registry.host}/unit/nodetect:t"), True, SilentReporter())
session.push_blob(Path({str(data)!r}), {digest!r}, "text/plain")
session.fetch_blob({digest!r}, {data.stat().st_size}, Path({str(tmp_path / "down")!r}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")
    assert (tmp_path / "down").read_bytes() == data.read_bytes()

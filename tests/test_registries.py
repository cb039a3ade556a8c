"""devtools/registries.py: the real docker-registry the tests and the bench push to, and the
access-log readers that say what went over the wire. Driven here with python-dxf directly,
a client independent of envpack's own registry code."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import dxf
import pytest
import requests

from devtools.registries import PlainRegistry
from tests.ocifixtures import plain_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainRegistry]:
    with plain_registry(tmp_path_factory.mktemp("registries"), auth=False) as reg:
        yield reg


def _client(registry: PlainRegistry, repo: str) -> dxf.DXF:
    return dxf.DXF(registry.host, repo, insecure=True)


def _push(registry: PlainRegistry, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _client(registry, repo).push_blob(data=io.BytesIO(data), digest=digest, check_exists=False)
    return digest


def test_uploads_and_their_bytes_are_read_from_the_log(registry: PlainRegistry) -> None:
    since = len(registry.access())
    data = b"registries upload " * 1000
    digest = _push(registry, "readers/up", data)
    assert registry.uploads(since) == [digest]
    assert registry.uploaded_bytes(since) == len(data)
    assert registry.blob_file(digest).read_bytes() == data
    assert registry.uploads(len(registry.access())) == []  # `since` leaves earlier steps out


def test_blob_gets_count_the_bytes_served(registry: PlainRegistry) -> None:
    data = b"registries download " * 777
    digest = _push(registry, "readers/down", data)
    since = len(registry.access())
    chunks = _client(registry, "readers/down").pull_blob(digest)
    assert not isinstance(chunks, tuple)
    got = b"".join(chunks)
    assert got == data
    assert registry.blob_gets(since) == {digest: len(data)}


def test_a_mount_from_another_repository_is_seen_and_sends_no_bytes(
    registry: PlainRegistry,
) -> None:
    data = b"registries mount " * 500
    digest = _push(registry, "readers/source", data)
    since = len(registry.access())
    _client(registry, "readers/target").mount_blob("readers/source", digest)
    assert registry.mounts(since) == [digest]
    assert registry.uploads(since) == []
    assert _client(registry, "readers/target").blob_size(digest) == len(data)


def test_the_htpasswd_registry_refuses_anonymous_and_takes_its_login(tmp_path: Path) -> None:
    with plain_registry(tmp_path, auth=True) as reg:
        assert reg.user and reg.password
        url = f"http://{reg.host}/v2/"
        assert requests.get(url, timeout=10).status_code == 401
        assert requests.get(url, auth=(reg.user, reg.password), timeout=10).status_code == 200
        assert [a.status for a in reg.access()] == [401, 200]


def test_the_token_registry_is_answered_by_its_token_server(tmp_path: Path) -> None:
    with plain_registry(tmp_path, auth=False, bearer=True) as reg:
        assert reg.user and reg.password and reg.ca
        challenge = requests.get(f"http://{reg.host}/v2/", timeout=10)
        assert challenge.headers["Www-Authenticate"].lower().startswith("bearer")
        user, password = reg.user, reg.password

        def answer(session: dxf.DXFBase, response: requests.Response) -> None:
            # dxf sends no login over plain HTTP; the token server itself is HTTPS.
            session._insecure = False
            try:
                session.authenticate(user, password, actions=["pull", "push"], response=response)
            finally:
                session._insecure = True

        client = dxf.DXF(reg.host, "token/repo", auth=answer, insecure=True, tlsverify=str(reg.ca))
        data = b"token pushed"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        client.push_blob(data=io.BytesIO(data), digest=digest, check_exists=False)
        assert reg.uploads() == [digest]

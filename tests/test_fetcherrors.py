"""rattler's download errors, as its client really raises them against real local servers,
sorted into retry-worthy and final, and said in words without secrets.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
from rattler.networking import Client
from rattler.package_streaming import download_to_writer

from devtools.httpserver import FaultServer
from devtools.serverproc import certificates
from envpack.core.errors import FetchError
from envpack.packer.fetcherrors import Transient, classify, giving_up
from envpack.packer.netconfig import NetworkOptions, load_config, make_client

SECRET = "fe-t0ken-5ecret-12"


class _Drop:
    def write(self, chunk: bytes) -> int:
        return len(chunk)


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RATTLER_AUTH_FILE", raising=False)
    return make_client(load_config(NetworkOptions(default_locations=False)))


def _raised(client: Client, url: str) -> BaseException:
    try:
        asyncio.run(download_to_writer(client, url, _Drop()))
    except Exception as exc:
        return exc
    raise AssertionError(f"{url} did not fail")


@pytest.mark.parametrize("code", ["500", "502", "503", "504", "429", "408"])
def test_transient_statuses_are_retried(client: Client, code: str) -> None:
    with FaultServer({"/x": b"x"}, then={"/x": code}) as server:
        outcome = classify(_raised(client, server.url("/x")), server.url("/x"))
    assert isinstance(outcome, Transient)
    assert str(outcome) == f"HTTP {code}"


@pytest.mark.parametrize(
    ("code", "words"), [("404", "not found"), ("401", "access denied"), ("403", "access denied")]
)
def test_final_statuses_say_what_to_do(client: Client, code: str, words: str) -> None:
    with FaultServer({"/x": b"x"}, then={f"/t/{SECRET}/x": code}) as server:
        url = server.url(f"/t/{SECRET}/x")
        outcome = classify(_raised(client, url), url)
    assert isinstance(outcome, FetchError)
    message = str(outcome)
    assert f"HTTP {code}" in message and words in message
    assert SECRET not in message and "/t/***/x" in message


def test_a_broken_body_is_transient(client: Client) -> None:
    with FaultServer({"/x": b"y" * 100_000}, then={"/x": "truncate"}) as server:
        outcome = classify(_raised(client, server.url("/x")), server.url("/x"))
    assert isinstance(outcome, Transient)
    assert "broke" in str(outcome)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_is_said_in_words(client: Client) -> None:
    url = f"http://127.0.0.1:{_dead_port()}/x.conda"
    outcome = classify(_raised(client, url), url)
    assert isinstance(outcome, Transient)
    final = giving_up("pkg 1.0", url, 3, outcome)
    assert "connection refused by 127.0.0.1" in str(final)
    assert "after 3 attempts" in str(final)


def test_an_untrusted_certificate_is_named(client: Client, tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    with FaultServer({"/x": b"x"}, tls=context) as server:
        url = server.url("/x")
        final = giving_up("pkg 1.0", url, 2, classify(_raised(client, url), url))
    assert "certificate" in str(final) and "tls-no-verify" in str(final)


def test_a_mirrored_request_names_where_it_went(client: Client, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_dead_port()}"
    options = NetworkOptions(mirrors=(("https://channel.invalid", dead),), default_locations=False)
    mirrored = make_client(load_config(options))
    url = "https://channel.invalid/linux-64/x.conda"
    final = giving_up("pkg 1.0", url, 2, classify(_raised(mirrored, url), url))
    assert f"sent to {dead}/linux-64/x.conda" in str(final)
    assert "connection refused" in str(final)


def test_unknown_rattler_errors_keep_no_query_string() -> None:
    # A presigned S3 URL carries its signature in the query: never shown.
    error = RuntimeError(
        "something odd for url (http://127.0.0.1:9/b/k?X-Amz-Signature=abc123&X-Amz-Credential=K)"
    )
    outcome = classify(error, "s3://b/k")
    assert isinstance(outcome, Transient)
    assert "X-Amz" not in str(outcome) and "abc123" not in str(outcome)
    assert "http://127.0.0.1:9/b/k" in str(outcome)

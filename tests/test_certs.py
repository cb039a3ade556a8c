"""certs: rattler gets a CA bundle on a host without one, and a host with one keeps its own."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from envpack.target import certs


@pytest.fixture
def no_system_cas(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(certs, "SYSTEM_CA_FILES", (str(tmp_path / "missing.crt"),))


def test_host_without_cas_gets_the_bundled_file(no_system_cas: None) -> None:
    env: dict[str, str] = {}
    chosen = certs.ensure_ca_certificates(env)
    assert chosen is not None
    assert env == {"SSL_CERT_FILE": str(chosen)}
    assert "BEGIN CERTIFICATE" in chosen.read_text()


def test_host_with_a_system_bundle_keeps_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr(certs, "SYSTEM_CA_FILES", (str(bundle),))
    env: dict[str, str] = {}
    assert certs.ensure_ca_certificates(env) is None
    assert env == {}


def test_configured_file_wins(no_system_cas: None, tmp_path: Path) -> None:
    mine = tmp_path / "mine.pem"
    mine.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"SSL_CERT_FILE": str(mine)}
    assert certs.ensure_ca_certificates(env) is None
    assert env == {"SSL_CERT_FILE": str(mine)}


@pytest.mark.parametrize("content", [None, ""])
def test_missing_or_empty_configured_file_is_replaced(
    no_system_cas: None, tmp_path: Path, content: str | None
) -> None:
    # An empty file would load no certificate at all, and rattler would panic just the same.
    configured = tmp_path / "empty.pem"
    if content is not None:
        configured.write_text(content)
    env = {"SSL_CERT_FILE": str(configured)}
    chosen = certs.ensure_ca_certificates(env)
    assert chosen is not None
    assert env["SSL_CERT_FILE"] == str(chosen)


def test_frozen_bundle_is_looked_up_under_meipass(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_system_cas: None
) -> None:
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert certs.bundled_ca_file() is None
    bundled = tmp_path / certs.BUNDLED_CA_PATH
    bundled.parent.mkdir()
    bundled.write_text("-----BEGIN CERTIFICATE-----\n")
    env: dict[str, str] = {}
    assert certs.ensure_ca_certificates(env) == bundled
    assert env == {"SSL_CERT_FILE": str(bundled)}

"""docker's credential-helper protocol, against helper programs that speak it: what each
answer means, and the one line each failure gets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envpack.core.errors import RegistryError
from envpack.target import credhelper
from envpack.target.credhelper import ask_helper
from envpack.target.dockerauth import Helper, Login

HOST = "registry.example:5000"


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "bin"
    where.mkdir()
    monkeypatch.setenv("PATH", f"{where}:{os.environ['PATH']}")
    return where


def _helper(bin_dir: Path, name: str, body: str) -> Helper:
    """docker-credential-`name` running `body` after reading the server from stdin."""
    program = bin_dir / f"docker-credential-{name}"
    program.write_text(f'#!/bin/sh\nread -r server\necho "$1 $server" > {bin_dir}/asked\n{body}\n')
    program.chmod(0o755)
    return Helper(name, "/home/u/.docker/config.json")


def _answer(user: str, secret: str) -> str:
    return f"printf '%s' '{json.dumps({'ServerURL': HOST, 'Username': user, 'Secret': secret})}'"


def test_the_helper_is_asked_with_get_and_the_host(bin_dir: Path) -> None:
    login = ask_helper(_helper(bin_dir, "pass", _answer("ci", "s3cret")), HOST)
    assert login == Login("ci", "s3cret", login.source if login else "")
    assert login is not None and "docker-credential-pass" in login.source
    assert "/home/u/.docker/config.json" in login.source
    assert (bin_dir / "asked").read_text() == f"get {HOST}\n"
    assert "s3cret" not in repr(login)


def test_docker_hub_is_asked_by_its_v1_url(bin_dir: Path) -> None:
    ask_helper(_helper(bin_dir, "hub", _answer("u", "p")), "docker.io")
    assert (bin_dir / "asked").read_text() == "get https://index.docker.io/v1/\n"


def test_no_login_in_the_helper_means_anonymous(bin_dir: Path) -> None:
    helper = _helper(bin_dir, "store", 'echo "credentials not found in native keychain"; exit 1')
    assert ask_helper(helper, HOST) is None
    assert ask_helper(_helper(bin_dir, "empty", _answer("", "")), HOST) is None


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ('echo "gpg: decryption failed: No secret key" >&2; exit 3', "decryption failed"),
        ("exit 4", "exit status 4"),
        ("echo not-json", "no Username and Secret"),
        (_answer("<token>", "refresh"), "identity token"),
    ],
)
def test_a_failing_helper_is_one_clear_error(bin_dir: Path, body: str, said: str) -> None:
    with pytest.raises(RegistryError, match=said) as info:
        ask_helper(_helper(bin_dir, "bad", body), HOST)
    message = str(info.value)
    assert "docker-credential-bad" in message and HOST in message
    assert "\n" not in message and "refresh" not in message


def test_a_missing_or_hanging_helper_is_one_clear_error(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RegistryError, match=r"docker-credential-nowhere.*not on PATH"):
        ask_helper(Helper("nowhere", "/etc/auth.json"), HOST)
    monkeypatch.setattr(credhelper, "_TIMEOUT", 1)
    with pytest.raises(RegistryError, match=r"gave no login for .* in 1 s"):
        ask_helper(_helper(bin_dir, "slow", "exec sleep 30"), HOST)

"""Finding a registry's login in docker's and podman's auth files, as `docker login` and
`podman login` write them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from envpack.core.errors import RegistryError
from envpack.target.dockerauth import Helper, Login, find_login


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME and no auth-file variables: only what a test writes is read."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return tmp_path


def _write(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_no_file_means_anonymous(files: Path) -> None:
    assert find_login("registry.example:5000") is None


def test_docker_config_keys_may_be_urls(files: Path) -> None:
    home = files / "home" / ".docker" / "config.json"
    _write(home, {"auths": {"https://Registry.Example:5000/v1/": {"auth": _auth("ann", "p:w")}}})
    login = find_login("registry.example:5000")
    assert login == Login("ann", "p:w", str(home))  # the password may hold a colon
    assert "p:w" not in repr(login)
    assert find_login("registry.example") is None  # another port is another registry


def test_docker_hub_is_found_under_its_index_url(files: Path) -> None:
    _write(
        files / "home" / ".docker" / "config.json",
        {"auths": {"https://index.docker.io/v1/": {"auth": _auth("hub", "pw")}}},
    )
    login = find_login("docker.io")
    assert isinstance(login, Login) and login.username == "hub"


def test_registry_auth_file_comes_first_then_docker_config(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = "127.0.0.1:5000"
    podman = _write(files / "auth.json", {"auths": {host: {"auth": _auth("podman", "a")}}})
    docker = _write(files / "docker" / "config.json", {"auths": {host: {"auth": _auth("d", "b")}}})
    _write(files / "home" / ".docker" / "config.json", {"auths": {host: {"auth": _auth("h", "c")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(docker.parent))
    assert find_login(host) == Login("d", "b", str(docker))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(podman))
    assert find_login(host) == Login("podman", "a", str(podman))
    # A file without this host's entry passes the search on to the next one.
    _write(podman, {"auths": {"elsewhere:1": {"auth": _auth("x", "y")}}})
    assert find_login(host) == Login("d", "b", str(docker))


def test_username_and_password_keys(files: Path) -> None:
    path = _write(
        files / "home" / ".docker" / "config.json",
        {"auths": {"h:1": {"username": "u", "password": "pw"}}},
    )
    assert find_login("h:1") == Login("u", "pw", str(path))


def test_credential_helpers_are_reported_not_run(files: Path) -> None:
    path = files / "home" / ".docker" / "config.json"
    _write(path, {"auths": {"h:1": {}}, "credsStore": "desktop"})
    assert find_login("h:1") == Helper("desktop", str(path))
    # A store holds only the hosts `docker login` left an entry for.
    assert find_login("other:1") is None
    _write(path, {"auths": {"h:1": {"auth": _auth("u", "p")}}, "credHelpers": {"h:1": "ecr"}})
    assert find_login("h:1") == Helper("ecr", str(path))  # a host's helper wins, as in docker


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "is not JSON"),
        ("[]", "is not a docker/podman auth file"),
        ('{"auths": []}', "must be objects"),
        ('{"auths": {"h:1": {"auth": "bm9jb2xvbg=="}}}', "is not base64 of user:password"),
        ('{"auths": {"h:1": {"auth": "%%%"}}}', "is not base64 of user:password"),
    ],
)
def test_a_broken_auth_file_is_one_line_without_its_contents(
    files: Path, text: str, needle: str
) -> None:
    path = files / "home" / ".docker" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(RegistryError, match=needle) as info:
        find_login("h:1")
    assert str(path) in str(info.value)
    assert "bm9jb2xvbg" not in str(info.value)

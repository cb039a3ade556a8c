"""Registry logins as docker and podman store them: which file, which entry, which user.

`docker login` writes ~/.docker/config.json (or $DOCKER_CONFIG/config.json); podman and
skopeo write $REGISTRY_AUTH_FILE in the same format. A host whose login lives in a
credential helper (credsStore, credHelpers) is reported as a `Helper`, which credhelper.py
runs only when the registry asks for a login.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envpack.core.errors import RegistryError

# docker keeps Docker Hub's login under its v1 index URL.
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Login:
    username: str
    password: str = field(repr=False)  # never in a message, a log or a repr
    source: str  # the file it came from


@dataclass(frozen=True)
class Helper:
    """The login is kept by docker-credential-`name`, as `source` configures."""

    name: str
    source: str


def credential_files() -> list[str]:
    """The auth files that exist, in the order a login is looked up: podman/skopeo's
    REGISTRY_AUTH_FILE, then docker's $DOCKER_CONFIG/config.json or ~/.docker/config.json."""
    found = [os.environ.get("REGISTRY_AUTH_FILE", "")]
    if os.environ.get("DOCKER_CONFIG"):
        found.append(str(Path(os.environ["DOCKER_CONFIG"]) / "config.json"))
    found.append(str(Path.home() / ".docker" / "config.json"))
    unique = dict.fromkeys(f for f in found if f and Path(f).is_file())
    return list(unique)


def find_login(host: str) -> Login | Helper | None:
    """The first file's entry for `host`; None if no file has one (go in anonymous)."""
    for path in credential_files():
        found = _entry(_read(path), host, path)
        if found is not None:
            return found
    return None


def _read(path: str) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegistryError(f"cannot read the auth file {path}: {exc.strerror}") from None
    except ValueError:
        raise RegistryError(
            f"the auth file {path} is not JSON; fix it, or log in again to rewrite it"
        ) from None
    if not isinstance(document, dict):
        raise RegistryError(f"the auth file {path} is not a docker/podman auth file")
    return document


def _entry(document: dict[str, Any], host: str, path: str) -> Login | Helper | None:
    helpers = document.get("credHelpers", {})
    auths = document.get("auths", {})
    if not isinstance(helpers, dict) or not isinstance(auths, dict):
        raise RegistryError(f"the auth file {path}: `auths` and `credHelpers` must be objects")
    for key, name in helpers.items():
        if _same_host(key, host):
            return Helper(str(name), path)
    for key, entry in auths.items():
        if _same_host(key, host) and isinstance(entry, dict):
            login = _login(entry, host, path)
            if login is not None:
                return login
            store = document.get("credsStore")
            if store:  # `docker login` with a store leaves an empty entry here
                return Helper(str(store), path)
    return None


def _login(entry: dict[str, Any], host: str, path: str) -> Login | None:
    if entry.get("username") and entry.get("password"):
        return Login(str(entry["username"]), str(entry["password"]), path)
    if not entry.get("auth"):
        return None
    try:
        user, sep, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        sep = ""
    if not sep or not user:
        raise RegistryError(
            f"the auth file {path}: the login for {host} is not base64 of user:password; "
            "log in again"
        )
    return Login(user, password, path)


def _same_host(key: str, host: str) -> bool:
    """docker's keys may be URLs (`https://host/v1/`): compare host[:port] only."""
    name = key.split("://", 1)[-1].split("/", 1)[0].lower()
    host = host.lower()
    return name == host or (name in _DOCKER_HUB and host in _DOCKER_HUB)

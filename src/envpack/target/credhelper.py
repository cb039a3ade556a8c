"""docker's credential-helper protocol: `docker-credential-NAME get` reads the registry's
server URL on stdin and answers `{"Username": ..., "Secret": ...}` on stdout.

This is how Docker Desktop, `docker-credential-pass`, ECR's and GCR's helpers keep logins;
`docker login` then leaves only `credsStore` or `credHelpers` in config.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from envpack.core.errors import RegistryError
from envpack.target.dockerauth import Helper, Login

# A helper may ask for a passphrase or a network round trip (ECR); docker waits without limit.
_TIMEOUT = 60
_DOCKER_HUB = "https://index.docker.io/v1/"  # the key docker stores Docker Hub's login under


def ask_helper(helper: Helper, host: str) -> Login | None:
    """The helper's login for `host`, or None when it has none (go in anonymous, as docker)."""
    program = f"docker-credential-{helper.name}"
    where = f"{program} (named in {helper.source})"
    found = shutil.which(program)
    if found is None:
        raise RegistryError(
            f"the login for {host} is kept by {where}, which is not on PATH; install it, "
            "or point REGISTRY_AUTH_FILE at an auth.json holding the login"
        )
    server = _DOCKER_HUB if host in ("docker.io", "index.docker.io") else host
    try:
        done = subprocess.run(
            [found, "get"], input=server.encode(), capture_output=True, timeout=_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise RegistryError(f"{where} gave no login for {host} in {_TIMEOUT} s") from None
    except OSError as exc:
        raise RegistryError(f"cannot run {where}: {exc.strerror}") from None
    said = (done.stdout or done.stderr).decode(errors="replace").strip()
    if done.returncode != 0:
        if "credentials not found" in said.lower():
            return None
        first = said.splitlines()[0] if said else f"exit status {done.returncode}"
        raise RegistryError(f"{where} failed for {host}: {first}; log in again with it")
    try:
        answer = json.loads(said)
        user, secret = str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{where} answered for {host} with no Username and Secret") from None
    if user == "<token>":
        raise RegistryError(
            f"{where} holds an identity token for {host}, which envpack cannot use; "
            "log in with a user and password or a registry token"
        )
    return Login(user, secret, where) if user and secret else None

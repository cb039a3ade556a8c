"""Real servers for the channel-scheme tests, started as processes and stopped by PID on
127.0.0.1: moto's standalone S3 server, Debian's docker-registry (distribution 2.8) over
TLS with htpasswd auth, a proxy, and a test CA with a certificate for them and for HTTPS.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.serverproc import certificates, free_port, port_free, process
from tests.clirun import BIN

S3_KEY = ("AKIAENVPACKTEST00001", "envpack-test-secret-key-0001")
REGISTRY_PORT = 443  # rattler's OciMiddleware always speaks https://HOST/v2/…, port dropped


@contextlib.contextmanager
def forward_proxy(tmp: Path) -> Iterator[str]:
    """proxy.py (from PyPI): a real HTTP proxy that tunnels https with CONNECT."""
    port = free_port()
    argv: list[str | Path] = [BIN / "proxy", "--hostname", "127.0.0.1", "--port", str(port)]
    with process([*argv, "--threaded"], port, tmp / "proxy.log"):
        yield f"http://127.0.0.1:{port}"


# --- S3 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    def options_toml(self, bucket: str | None = None) -> str:
        return (
            f'[s3-options.{bucket or self.bucket}]\nendpoint-url = "{self.endpoint}"\n'
            'region = "us-east-1"\naddressing-style = "path"\n'
        )


@contextlib.contextmanager
def moto_s3(tmp: Path, files: Mapping[str, Path], bucket: str) -> Iterator[S3]:
    """moto's standalone S3 server holding `files` (key → local file) in `bucket`."""
    import boto3

    port = free_port()
    with process([BIN / "moto_server", "-H", "127.0.0.1", "-p", str(port)], port, tmp / "moto.log"):
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEY[0],
            aws_secret_access_key=S3_KEY[1],
        )
        s3.create_bucket(Bucket=bucket)
        for key, path in files.items():
            s3.upload_file(str(path), bucket, key)
        yield S3(endpoint, bucket)


# --- OCI ---------------------------------------------------------------------------------------


def oci_reference(repo_prefix: str, subdir: str, filename: str) -> tuple[str, str, str]:
    """(repository, tag, media type) where rattler's OciMiddleware looks for a package file.

    From rattler's docs and source (CEP "OCI registries as conda channels"): repository
    `<channel path>/<subdir>/<name>` (a leading `_` becomes `zzz_`), tag `<version>-<build>`
    with `+ ! =` spelled `__p__ __e__ __eq__`, and the file as the layer whose media type is
    `application/vnd.conda.package.v2` (.conda) or `.v1` (.tar.bz2).
    """
    if filename.endswith(".conda"):
        stem, media = filename[: -len(".conda")], "application/vnd.conda.package.v2"
    else:
        stem, media = filename[: -len(".tar.bz2")], "application/vnd.conda.package.v1"
    name, version, build = stem.rsplit("-", 2)
    if name.startswith("_"):
        name = "zzz" + name
    tag = f"{version}-{build}".replace("+", "__p__").replace("!", "__e__").replace("=", "__eq__")
    return f"{repo_prefix}/{subdir}/{name}", tag, media


@dataclass(frozen=True)
class Registry:
    host: str  # as oci:// URLs name it: no port
    user: str
    password: str
    log: Path


@contextlib.contextmanager
def oci_registry(tmp: Path, files: Mapping[str, Path], repo_prefix: str) -> Iterator[Registry]:
    """docker-registry on 127.0.0.1:443 (TLS, htpasswd), holding `files` (subdir/filename →
    path) pushed with oras-py in the layout above. Port 443 is machine-wide: a file lock
    serialises concurrent test sessions."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (scripts/test installs it)")
    import bcrypt
    import oras.client

    certs = certificates(tmp)
    user, password = "reader", "registry-pw-7f3e"
    (tmp / "htpasswd").write_text(
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
    )
    config = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "registry-data")}},
        "http": {
            "addr": f"127.0.0.1:{REGISTRY_PORT}",
            "tls": {"certificate": str(certs.cert), "key": str(certs.key)},
        },
        "auth": {"htpasswd": {"realm": "envpack-test", "path": str(tmp / "htpasswd")}},
    }
    (tmp / "registry.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
    lock_path = Path(tempfile.gettempdir()) / "envpack-test-registry-443.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not port_free(REGISTRY_PORT):
            pytest.skip(f"127.0.0.1:{REGISTRY_PORT} is taken by something other than these tests")
        argv: list[str | Path] = ["docker-registry", "serve", tmp / "registry.yml"]
        with process(argv, REGISTRY_PORT, tmp / "registry.log"):
            client = oras.client.OrasClient(
                hostname=f"127.0.0.1:{REGISTRY_PORT}",
                tls_verify=str(certs.ca),
                auth_backend="basic",
            )
            client.auth.set_basic_auth(user, password)
            # Up front: oras-py sends each request bare first, and the registry's early 401
            # to a large blob PUT breaks the upload mid-body.
            client.session.auth = (user, password)
            for rel, path in files.items():
                subdir, filename = rel.split("/", 1)
                repo, tag, media = oci_reference(repo_prefix, subdir, filename)
                # oras pushes a file by its name relative to the working directory.
                with contextlib.chdir(path.parent):
                    response = client.push(
                        target=f"127.0.0.1:{REGISTRY_PORT}/{repo}:{tag}",
                        files=[f"{path.name}:{media}"],
                        disable_path_validation=True,
                    )
                assert response.status_code == 201, response.text
            yield Registry("127.0.0.1", user, password, tmp / "registry.log")

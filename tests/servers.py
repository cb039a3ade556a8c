"""Real servers for the channel-scheme tests, started as processes and stopped by PID on
127.0.0.1: moto's standalone S3 server, Debian's docker-registry (distribution 2.8) over
TLS with htpasswd auth, a proxy, and a test CA with a certificate for them and for HTTPS.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clirun import BIN

S3_KEY = ("AKIAENVPACKTEST00001", "envpack-test-secret-key-0001")
REGISTRY_PORT = 443  # rattler's OciMiddleware always speaks https://HOST/v2/…, port dropped


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def process(
    argv: Sequence[str | Path], port: int, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server until the block ends; stop it by its PID, never by name."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        _wait_listening(port, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Certificates:
    ca: Path  # a test CA, to trust through SSL_CERT_FILE
    cert: Path  # a server certificate for 127.0.0.1 (IP SAN) that the CA signed
    key: Path


def certificates(where: Path) -> Certificates:
    """A CA and a server certificate it signed, from openssl (webpki refuses a self-signed
    server certificate as its own anchor, so the test CA is a CA)."""
    out = Certificates(where / "ca.pem", where / "cert.pem", where / "key.pem")
    if out.cert.exists():
        return out

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    ca_key, csr, ext = where / "ca.key", where / "cert.csr", where / "ext.cnf"
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        ca_key,
        "-out",
        out.ca,
        "-subj",
        "/CN=envpack test CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        out.key,
        "-out",
        csr,
        "-subj",
        "/CN=127.0.0.1",
    )
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        out.ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        out.cert,
        "-extfile",
        ext,
    )
    return out


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
        if not _port_free(REGISTRY_PORT):
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


# --- a plain-HTTP registry for envpack's own oci:// artifacts --------------------------------


@dataclass(frozen=True)
class PlainRegistry:
    host: str  # 127.0.0.1:PORT, as oci:// references and docker's config.json name it
    storage: Path  # the filesystem driver's root: blobs live below it
    log: Path
    user: str | None
    password: str | None

    def blob_file(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def access(self) -> list[Access]:
        """The registry's access log: one entry per request, in order."""
        text = self.log.read_text(errors="replace")
        return [
            Access(m["method"], m["path"], int(m["status"]), int(m["size"].replace("-", "0")))
            for m in _ACCESS.finditer(text)
        ]

    def blob_gets(self) -> dict[str, int]:
        """digest → bytes served, of every successful blob GET."""
        got: dict[str, int] = {}
        for a in self.access():
            if a.method == "GET" and "/blobs/sha256:" in a.path and a.status == 200:
                digest = a.path.rsplit("/", 1)[1]
                got[digest] = got.get(digest, 0) + a.size
        return got

    def uploads(self) -> list[str]:
        """Digests of blobs whose upload completed (the PUT that closes an upload session)."""
        return [
            "sha256:" + a.path.split("digest=sha256%3A", 1)[1][:64]
            for a in self.access()
            if a.method == "PUT" and "/blobs/uploads/" in a.path and a.status == 201
        ]


@dataclass(frozen=True)
class Access:
    method: str
    path: str
    status: int
    size: int


_ACCESS = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>[0-9]{3}) (?P<size>[0-9]+|-)'
)


@contextlib.contextmanager
def plain_registry(tmp: Path, *, auth: bool, bearer: bool = False) -> Iterator[PlainRegistry]:
    """Debian's docker-registry on 127.0.0.1:<free port>, plain HTTP, storage in `tmp`,
    with htpasswd basic auth if `auth`, or with docker's token auth (a bearer challenge
    answered by `token_server`) if `bearer`; stopped by PID."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user, password = ("pusher", "s3cret-registry-pw-91c2") if auth or bearer else (None, None)
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "storage")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    tokens = contextlib.ExitStack()
    if bearer:
        certs = certificates(tmp)
        realm = tokens.enter_context(token_server(certs, str(user), str(password)))
        config["auth"] = {
            "token": {
                "realm": realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(certs.ca),
            }
        }
    elif auth:
        import bcrypt

        hashed = bcrypt.hashpw(str(password).encode(), bcrypt.gensalt(rounds=4)).decode()
        (tmp / "htpasswd").write_text(f"{user}:{hashed}\n")
        config["auth"] = {"htpasswd": {"realm": "envpack-test", "path": str(tmp / "htpasswd")}}
    (tmp / "registry.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
    log = tmp / "registry.log"
    with tokens, process(["docker-registry", "serve", tmp / "registry.yml"], port, log):
        yield PlainRegistry(f"127.0.0.1:{port}", tmp / "storage", log, user, password)


TOKEN_SERVICE = "envpack-test-registry"
TOKEN_ISSUER = "envpack-test-token-issuer"


@contextlib.contextmanager
def token_server(certs: Certificates, user: str, password: str) -> Iterator[str]:
    """A token endpoint as docker's token auth specifies it: checks basic credentials and
    returns a JWT (RS256, signed with joserfc by the test CA whose certificate the registry
    trusts, in the x5c header) granting exactly the scope asked for. Yields the realm URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.import_key(certs.ca.with_name("ca.key").read_bytes())
    der = x509.load_pem_x509_certificate(certs.ca.read_bytes()).public_bytes(Encoding.DER)
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    issued: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            query = parse_qs(urlsplit(self.path).query)
            access = []
            for scope in query.get("scope", []):
                kind, name, actions = scope.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            now = int(time.time())
            claims = {
                "iss": TOKEN_ISSUER,
                "sub": user,
                "aud": TOKEN_SERVICE,
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": os.urandom(8).hex(),
                "access": access,
            }
            header = {"alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
            token = jwt.encode(header, claims, key)
            issued.append(" ".join(query.get("scope", [])))
            body = json.dumps({"token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

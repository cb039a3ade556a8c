"""Debian's docker-registry for envpack's own oci:// artifacts: plain HTTP on a free port,
without auth, with htpasswd basic auth, or with docker's token auth (a bearer challenge
answered by a small token server); started as a process and stopped by PID. Its access log
and blob store are what the tests and `scripts/bench registry` read to see what went over
the wire.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools.serverproc import Certificates, certificates, free_port, process


class RegistryMissing(RuntimeError):
    """No docker-registry on PATH: the tests skip, the bench says so in its section."""


def registry_available() -> bool:
    return shutil.which("docker-registry") is not None


@dataclass(frozen=True)
class PlainRegistry:
    host: str  # 127.0.0.1:PORT, as oci:// references and docker's config.json name it
    storage: Path  # the filesystem driver's root: blobs live below it
    log: Path
    user: str | None
    password: str | None
    ca: Path | None = None  # trusts the token server (REQUESTS_CA_BUNDLE), if there is one

    def blob_file(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def access(self, since: int = 0) -> list[Access]:
        """The registry's access log: one entry per request, in order, from entry `since`
        (a `len(access())` taken earlier: what one step of a test or bench sent)."""
        text = self._settled_log()
        return [
            Access(m["method"], m["path"], int(m["status"]), int(m["size"].replace("-", "0")))
            for m in _ACCESS.finditer(text)
            if _SETTLE not in m["path"]
        ][since:]

    def _settled_log(self) -> str:
        """The log once every request the caller has finished is in it.

        The registry writes a request's line after its response is sent, so a client can have
        a whole blob before its GET is logged (a test read the log in that gap). One more
        request, marked, and its line awaited, then a moment's quiet: what came before is in.
        """
        marker = f"/v2/?{_SETTLE}={time.monotonic_ns()}"
        with contextlib.suppress(OSError):  # 401 on an auth registry: logged all the same
            _DIRECT.open(f"http://{self.host}{marker}", timeout=5).close()
        deadline = time.monotonic() + 5
        text = self.log.read_text(errors="replace")
        while marker not in text and time.monotonic() < deadline:
            time.sleep(0.01)
            text = self.log.read_text(errors="replace")
        time.sleep(0.02)
        return self.log.read_text(errors="replace")

    def blob_gets(self, since: int = 0) -> dict[str, int]:
        """digest → bytes served, of every successful blob GET."""
        got: dict[str, int] = {}
        for a in self.access(since):
            if a.method == "GET" and "/blobs/sha256:" in a.path and a.status == 200:
                digest = a.path.rsplit("/", 1)[1]
                got[digest] = got.get(digest, 0) + a.size
        return got

    def uploads(self, since: int = 0) -> list[str]:
        """Digests of blobs whose upload completed (the PUT that closes an upload session)."""
        return [
            "sha256:" + a.path.split("digest=sha256%3A", 1)[1][:64]
            for a in self.access(since)
            if a.method == "PUT" and "/blobs/uploads/" in a.path and a.status == 201
        ]

    def uploaded_bytes(self, since: int = 0) -> int:
        """Bytes of the blobs uploaded: the access log counts response bytes only, so each
        completed upload is measured by the blob it stored."""
        return sum(self.blob_file(d).stat().st_size for d in self.uploads(since))

    def mounts(self, since: int = 0) -> list[str]:
        """Digests of blobs mounted from another repository (a POST answered 201, no bytes)."""
        return [
            "sha256:" + a.path.split("mount=sha256%3A", 1)[1][:64]
            for a in self.access(since)
            if a.method == "POST" and "mount=sha256%3A" in a.path and a.status == 201
        ]


@dataclass(frozen=True)
class Access:
    method: str
    path: str
    status: int
    size: int


# No proxy from the environment between us and 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The query of the requests that settle the log (access() leaves them out).
_SETTLE = "envpack-settle"
_ACCESS = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>[0-9]{3}) (?P<size>[0-9]+|-)'
)


@contextlib.contextmanager
def plain_registry(tmp: Path, *, auth: bool, bearer: bool = False) -> Iterator[PlainRegistry]:
    """Debian's docker-registry on 127.0.0.1:<free port>, plain HTTP, storage in `tmp`,
    with htpasswd basic auth if `auth`, or with docker's token auth (a bearer challenge
    answered by `token_server`) if `bearer`; stopped by PID."""
    if not registry_available():
        raise RegistryMissing("docker-registry is not installed (apt-get install docker-registry)")
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
    ca = None
    if bearer:
        certs = certificates(tmp)
        ca = certs.ca
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
        yield PlainRegistry(f"127.0.0.1:{port}", tmp / "storage", log, user, password, ca)


TOKEN_SERVICE = "envpack-test-registry"
TOKEN_ISSUER = "envpack-test-token-issuer"


@contextlib.contextmanager
def token_server(certs: Certificates, user: str, password: str) -> Iterator[str]:
    """A token endpoint as docker's token auth specifies it: checks basic credentials and
    returns a JWT (RS256, signed with joserfc by the test CA whose certificate the registry
    trusts, in the x5c header) granting exactly the scope asked for. Over HTTPS, as real
    token servers are (python-dxf fetches tokens over HTTPS only). Yields the realm URL."""
    import ssl
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
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

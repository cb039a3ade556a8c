"""Local servers as processes: a free port on 127.0.0.1, a server run until a block ends and
stopped by its PID (never by name), and a test CA with a certificate for 127.0.0.1. Shared by
the tests and the bench, so neither needs the other.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
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
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", ca_key,
            "-out", out.ca, "-subj", "/CN=envpack test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", out.key, "-out", csr,
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", csr, "-CA", out.ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-out", out.cert, "-extfile", ext)  # fmt: skip
    return out

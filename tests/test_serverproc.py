"""devtools/serverproc.py: a server run as a process and stopped by its PID, free ports, and
the test CA that openssl makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.serverproc import certificates, free_port, port_free, process


def test_a_server_runs_until_the_block_ends_and_is_stopped_by_pid(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    with process(argv, port, tmp_path / "server.log") as proc:
        assert proc.poll() is None
        assert not port_free(port)
    assert proc.returncode is not None
    assert port_free(port)


def test_a_server_that_exits_at_once_is_reported_with_its_log(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    with (
        pytest.raises(RuntimeError, match=r"exited with 3.*boom"),
        process(argv, port, tmp_path / "server.log"),
    ):
        pass


def test_the_certificate_is_signed_by_the_ca_for_127_0_0_1(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(certs.ca), str(certs.cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    text = subprocess.run(
        ["openssl", "x509", "-in", str(certs.cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in text
    assert certificates(tmp_path).cert.read_bytes() == certs.cert.read_bytes()  # made once

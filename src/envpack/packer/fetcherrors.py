"""rattler's download errors, sorted into retry-worthy and final, and said in words.

py-rattler raises plain RuntimeError/OSError whose message is reqwest's top-level line
("error sending request for url (…)"), and that line carries the URL as sent, presigned
S3 signatures and conda tokens included. So no message of rattler's is ever shown as is:
the status code and the kind of failure are read from it, and the words are ours.
"""

from __future__ import annotations

import re
import socket
import ssl
from urllib.parse import urlsplit

from envpack.core.errors import FetchError
from envpack.packer.urls import redact, redact_text

_STATUS = re.compile(r"HTTP status (?:client|server) error \((\d{3})")
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_AUTH_HINT = (
    "check the credentials for this host (--auth-file, $RATTLER_AUTH_FILE, ~/.netrc or the "
    "keyring; for s3:// the AWS_* variables)"
)


class Transient(Exception):
    """A failure worth retrying; never escapes the fetcher."""

    def __init__(self, reason: str, sent_to: str | None = None) -> None:
        super().__init__(reason)
        self.sent_to = sent_to  # the URL rattler really asked, after mirrors: for diagnosis


_SENT_TO = re.compile(r"for url \(([^)\s]+)\)")


def _sent_to(text: str) -> str | None:
    match = _SENT_TO.search(text)
    return match.group(1).split("?", 1)[0] if match else None


def classify(error: BaseException, url: str) -> Exception:
    """The exception to raise for one failed attempt at `url`."""
    text = str(error)
    status = _STATUS.search(text)
    if status is not None:
        code = int(status.group(1))
        if code in _TRANSIENT_STATUS:
            return Transient(f"HTTP {code}")
        if code in (401, 403):
            return FetchError(
                f"HTTP {code} for {redact(url)}: access denied; {_AUTH_HINT}, then run again"
            )
        if code == 404:
            return FetchError(
                f"HTTP 404 for {redact(url)}: not found (for s3:// and oci:// also a missing "
                "bucket or repository); is the lock current and the channel right?"
            )
        return FetchError(f"HTTP {code} for {redact(url)}; is the lock current?")
    if "error decoding response body" in text or "error reading a body" in text:
        return Transient("the connection broke during the download")
    if "error sending request" in text:
        return Transient("the request could not be sent", _sent_to(text))
    if "builder error" in text:
        return FetchError(f"cannot request {redact(url)}: not a URL rattler's client can fetch")
    if "failed to presign the S3" in text:
        return FetchError(
            f"cannot sign the S3 request for {redact(url)}: no usable AWS credentials; set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), then run again"
        )
    if "access token for GCS" in text:
        return FetchError(
            f"cannot get a Google Cloud access token for {redact(url)}: no usable GCS "
            "credentials; set GOOGLE_APPLICATION_CREDENTIALS, then run again"
        )
    if "OCI registry requested authentication" in text:
        return FetchError(f"the OCI registry refused access to {redact(url)}; {_AUTH_HINT}")
    if "Manifest not found" in text or "Layer not found" in text:
        return FetchError(
            f"{redact(url)} is not in the OCI registry (no manifest or no conda layer for it); "
            "is the lock current and the channel right?"
        )
    # Anything else from the middlewares (S3 credentials, OCI tokens, …): retry, then say it.
    return Transient(_safe(text))


def giving_up(label: str, url: str, attempts: int, last: Exception) -> FetchError:
    reason = str(last)
    sent_to = last.sent_to if isinstance(last, Transient) else None
    if reason == "the request could not be sent":
        reason = _why_unreachable(sent_to or url)
    via = ""
    if sent_to and urlsplit(sent_to)[:2] != urlsplit(url)[:2]:
        via = f" (sent to {redact(sent_to)})"
    return FetchError(
        f"{label}: giving up on {redact(url)}{via} after {attempts} attempts ({reason}); "
        "check the network or the mirror, then run again"
    )


def _why_unreachable(url: str) -> str:
    """reqwest says only "error sending request": find out in words what the host does."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "oci") or not parts.hostname:
        return "the request could not be sent"
    # rattler speaks https to an oci:// registry, on port 443 whatever the URL says.
    secure = parts.scheme != "http"
    port = (parts.port if parts.scheme != "oci" else None) or (443 if secure else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=3) as sock:
            if secure:
                _check_certificate(sock, parts.hostname)
    except ssl.SSLCertVerificationError as exc:
        return (
            f"the TLS certificate of {parts.hostname}:{port} is not trusted "
            f"({exc.verify_message}); trust its CA or set tls-no-verify in a config file"
        )
    except ConnectionRefusedError:
        return f"connection refused by {parts.hostname}:{port}"
    except socket.gaierror:
        return f"host {parts.hostname} not found"
    except TimeoutError:
        return f"connecting to {parts.hostname}:{port} timed out"
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}"
    return "the server closed the connection without an answer"


def _check_certificate(sock: socket.socket, host: str) -> None:
    """Raise SSLCertVerificationError if the server's certificate is not trusted."""
    sock.settimeout(3)
    try:
        ssl.create_default_context().wrap_socket(sock, server_hostname=host).close()
    except ssl.SSLCertVerificationError:
        raise
    except (ssl.SSLError, OSError):
        pass  # other TLS trouble: not what this probe can name


def _safe(text: str) -> str:
    """rattler's first line, with any URL in it redacted and without its query."""
    return redact_text(text.strip().splitlines()[0] if text.strip() else "unknown error")

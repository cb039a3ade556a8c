"""rattler's download errors, sorted into retry-worthy and final, and said in words.

py-rattler raises plain RuntimeError/OSError whose message is reqwest's top-level line
("error sending request for url (…)"), and that line carries the URL as sent, presigned
S3 signatures and conda tokens included. So no message of rattler's is ever shown as is:
the status code and the kind of failure are read from it, and the words are ours.
"""

from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit

from envpack.errors import FetchError
from envpack.urls import redact

_STATUS = re.compile(r"HTTP status (?:client|server) error \((\d{3})")
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_AUTH_HINT = (
    "check the credentials for this host (--auth-file, $RATTLER_AUTH_FILE, ~/.netrc or the "
    "keyring; for s3:// the AWS_* variables)"
)


class Transient(Exception):
    """A failure worth retrying; never escapes the fetcher."""


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
        return Transient("the request could not be sent")
    if "builder error" in text:
        return FetchError(f"cannot request {redact(url)}: not a URL rattler's client can fetch")
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
    if reason == "the request could not be sent":
        reason = _why_unreachable(url)
    return FetchError(
        f"{label}: giving up on {redact(url)} after {attempts} attempts ({reason}); "
        "check the network or the mirror, then run again"
    )


def _why_unreachable(url: str) -> str:
    """reqwest says only "error sending request": find out in words what the host does."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the request could not be sent"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=3):
            pass
    except ConnectionRefusedError:
        return f"connection refused by {parts.hostname}:{port}"
    except socket.gaierror:
        return f"host {parts.hostname} not found"
    except TimeoutError:
        return f"connecting to {parts.hostname}:{port} timed out"
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}"
    return "the server closed the connection without an answer"


def _safe(text: str) -> str:
    """rattler's first line, with any URL in it reduced to its redacted form without query."""
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"

    def clean(match: re.Match[str]) -> str:
        return redact(match.group(0).split("?", 1)[0])

    return re.sub(r"[a-z][a-z0-9+.-]*://[^\s)]+", clean, line)

"""URL helpers for the packer: hide credentials. Pure functions."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

_TOKEN = re.compile(r"/t/[^/]+/")
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s)\"']+")


def redact(url: str) -> str:
    """Hide `/t/<token>/` and `user:pass@` so a URL can be printed or stored."""
    url = _TOKEN.sub("/t/***/", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def strip_credentials(url: str) -> tuple[str, tuple[str, str] | None, str | None]:
    """Split a URL into (URL without secrets, basic-auth pair, conda token)."""
    token = None
    match = _TOKEN.search(url)
    if match:
        token = match.group(0)[3:-1]
        url = url[: match.start()] + "/" + url[match.end() :]
    parts = urlsplit(url)
    basic = None
    if parts.username is not None:
        basic = (unquote(parts.username), unquote(parts.password or ""))
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        url = urlunsplit(parts._replace(netloc=host))
    return url, basic, token


def redact_text(text: str) -> str:
    """Every URL in `text` redacted and without its query (presigned S3 URLs sign there)."""
    return _URL.sub(lambda m: redact(m.group(0).split("?", 1)[0]), text)

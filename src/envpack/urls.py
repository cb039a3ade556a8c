"""URL helpers for the packer: hide credentials, apply mirrors. Pure functions."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

_TOKEN = re.compile(r"/t/[^/]+/")


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


def apply_mirrors(url: str, mirrors: Mapping[str, str]) -> str:
    """Rewrite `url` with the longest matching ORIGINAL prefix."""
    best = ""
    for original in mirrors:
        prefix = original.rstrip("/") + "/"
        if url.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    if not best:
        return url
    for original, mirror in mirrors.items():
        if original.rstrip("/") + "/" == best:
            return mirror.rstrip("/") + "/" + url[len(best) :]
    return url  # pragma: no cover - best always comes from mirrors


def parse_mirror(text: str) -> tuple[str, str]:
    """Parse one `ORIGINAL=MIRROR` option."""
    original, sep, mirror = text.partition("=")
    if not sep or not original.strip() or not mirror.strip():
        raise ValueError(f"--mirror expects ORIGINAL=MIRROR, got {text!r}")
    return original.strip(), mirror.strip()


def pixi_config_mirrors(paths: list[Path]) -> dict[str, str]:
    """Read `[mirrors]` from pixi's config files; the first mirror of each entry wins."""
    mirrors: dict[str, str] = {}
    for path in paths:
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, ValueError):
            continue
        table = doc.get("mirrors")
        if not isinstance(table, dict):
            continue
        for original, targets in table.items():
            if isinstance(targets, list) and targets and isinstance(targets[0], str):
                mirrors[original] = targets[0]
    return mirrors

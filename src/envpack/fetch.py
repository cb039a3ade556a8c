"""The only network code: concurrent, retried, hash-while-streaming downloads into a verified cache.

The HTTP client is injected (a urllib3 PoolManager), never global, so tests can point it at
a local server and faults can be injected without monkeypatching.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit, urlunsplit

import urllib3

from envpack.errors import FetchError, HashMismatchError
from envpack.models import Artifact, Download
from envpack.progress import Bar, Reporter
from envpack.urls import redact, strip_credentials

_CHUNK = 1 << 20
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class FetchOptions:
    concurrency: int = 8
    attempts: int = 5
    timeout: float = 30.0
    backoff: float = 0.5
    backoff_max: float = 8.0


@dataclass(frozen=True)
class Fetched:
    """A verified file in the cache and the facts measured while it streamed."""

    artifact: Artifact
    path: Path
    sha256: str
    size: int


class _Transient(Exception):
    """A failure worth retrying; never escapes this module."""


class _Stopped(Exception):
    """Another download failed for good; this one gave up early."""


# --- credentials -------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """rattler's auth file format: host → BearerToken | CondaToken | BasicHTTP."""

    entries: Mapping[str, Mapping[str, object]]

    @classmethod
    def load(cls, path: Path | None) -> Credentials:
        if path is None:
            env = os.environ.get("RATTLER_AUTH_FILE")
            path = Path(env) if env else None
        if path is None:
            return cls({})
        try:
            doc = json.loads(path.read_text())
        except OSError as exc:
            raise FetchError(f"cannot read auth file {path}: {exc.strerror}") from None
        except ValueError:
            raise FetchError(f"auth file {path} is not valid JSON") from None
        if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
            raise FetchError(f"auth file {path} must map hosts to credentials, as rattler's does")
        return cls(doc)

    def for_host(self, host: str, port: int | None = None) -> Mapping[str, object] | None:
        if port is not None and f"{host}:{port}" in self.entries:
            return self.entries[f"{host}:{port}"]
        if host in self.entries:
            return self.entries[host]
        for pattern, value in self.entries.items():
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return value
        return None


def _prepare_request(url: str, credentials: Credentials) -> tuple[str, dict[str, str]]:
    """Move secrets out of the URL into headers (or the conda token path) for the request."""
    clean, basic, token = strip_credentials(url)
    headers: dict[str, str] = {}
    parts = urlsplit(clean)
    entry = credentials.for_host(parts.hostname or "", parts.port)
    if entry is not None and basic is None and token is None:
        if "BearerToken" in entry:
            headers["Authorization"] = f"Bearer {entry['BearerToken']}"
        elif "CondaToken" in entry:
            token = str(entry["CondaToken"])
        elif isinstance(entry.get("BasicHTTP"), dict):
            pair = entry["BasicHTTP"]
            assert isinstance(pair, dict)
            basic = (str(pair.get("username", "")), str(pair.get("password", "")))
    if basic is not None:
        raw = f"{basic[0]}:{basic[1]}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    if token is not None:
        parts = urlsplit(clean)
        clean = urlunsplit(parts._replace(path=f"/t/{token}{parts.path}"))
    return clean, headers


# --- cache ---------------------------------------------------------------------------------


class Cache:
    """Content-addressed files; a file only ever appears under its name by atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, artifact: Artifact, url: str) -> Path:
        if artifact.sha256:
            return self.root / "sha256" / artifact.sha256[:2] / artifact.sha256
        if artifact.md5:
            return self.root / "md5" / artifact.md5[:2] / artifact.md5
        # No hash in the lock: key by the URL without secrets; the hash is recorded beside it.
        key = hashlib.sha256(strip_credentials(url)[0].encode()).hexdigest()
        return self.root / "url" / key[:2] / key

    def tempfile(self, target: Path) -> tuple[BinaryIO, Path]:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
        return tmp.open("wb"), tmp


def _hash_file(path: Path, *, md5_too: bool) -> tuple[str, str, int]:
    # md5 only when the lock has nothing better: hashing twice doubles a warm pack's cost.
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False) if md5_too else None
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            if md5 is not None:
                md5.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), md5.hexdigest() if md5 is not None else "", size


def _check(artifact: Artifact, url: str, sha256: str, md5: str, size: int) -> None:
    if artifact.sha256 and artifact.sha256 != sha256:
        raise HashMismatchError(
            f"{artifact.label}: sha256 mismatch for {redact(url)}: "
            f"lock says {artifact.sha256}, got {sha256}"
        )
    if not artifact.sha256 and artifact.md5 and artifact.md5 != md5:
        raise HashMismatchError(
            f"{artifact.label}: md5 mismatch for {redact(url)}: lock says {artifact.md5}, got {md5}"
        )
    if artifact.size is not None and artifact.size != size and artifact.size > 0:
        raise HashMismatchError(
            f"{artifact.label}: size mismatch for {redact(url)}: "
            f"lock says {artifact.size} bytes, got {size}"
        )


# --- the fetcher -----------------------------------------------------------------------------


class Fetcher:
    def __init__(
        self,
        cache: Cache,
        http: urllib3.PoolManager,
        reporter: Reporter,
        options: FetchOptions | None = None,
        credentials: Credentials | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._cache = cache
        self._http = http
        self._reporter = reporter
        self._options = options or FetchOptions()
        self._credentials = credentials or Credentials({})
        self._sleep = sleep
        self._stop = threading.Event()

    def fetch_all(self, downloads: Iterable[Download]) -> list[Fetched]:
        """Fetch every download; the first permanent failure cancels the rest and is raised."""
        items = list(downloads)
        total = sum(d.artifact.size or 0 for d in items) or None
        byte_bar = self._reporter.bar("download", total, "B")
        count_bar = self._reporter.bar("packages", len(items), "pkg")
        results: dict[str, Fetched] = {}
        try:
            with ThreadPoolExecutor(max(1, self._options.concurrency)) as pool:
                futures = [pool.submit(self.fetch, d, byte_bar) for d in items]
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                errors = [f.exception() for f in done if f.exception() is not None]
                failure = next((e for e in errors if not isinstance(e, _Stopped)), None)
                if failure is not None:
                    self._stop.set()
                    for future in pending:
                        future.cancel()
                    raise failure
                for future in futures:
                    fetched = future.result()
                    results[fetched.artifact.path] = fetched
                    count_bar.update(1)
        finally:
            byte_bar.close()
            count_bar.close()
        return [results[d.artifact.path] for d in items]

    def fetch(self, download: Download, bar: Bar | None = None) -> Fetched:
        artifact, url = download.artifact, download.url
        target = self._cache.path_for(artifact, url)
        hit = self._cached(artifact, url, target)
        if hit is not None:
            self._reporter.debug(f"cache hit {artifact.filename}")
            if bar is not None:
                bar.update(hit.size)
            return hit
        attempt = 0
        while True:
            if self._stop.is_set():
                raise _Stopped()
            attempt += 1
            try:
                return self._download(artifact, url, target, bar)
            except _Transient as exc:
                if attempt >= self._options.attempts:
                    raise FetchError(
                        f"{artifact.label}: giving up on {redact(url)} after {attempt} attempts "
                        f"({exc}); check the network or the mirror, then run again"
                    ) from None
                delay = min(self._options.backoff_max, self._options.backoff * 2 ** (attempt - 1))
                # Jitter spreads retries of many parallel downloads hitting one flaky server.
                delay *= 0.5 + random.random()  # noqa: S311 - not security relevant
                self._reporter.debug(f"retrying {artifact.filename} in {delay:.1f}s: {exc}")
                self._sleep(delay)

    def _cached(self, artifact: Artifact, url: str, target: Path) -> Fetched | None:
        if not target.is_file():
            return None
        # A cache hit is hashed again: a cache is a disk, and disks and people corrupt files.
        sha256, md5, size = _hash_file(target, md5_too=not artifact.sha256)
        try:
            if not artifact.sha256 and not artifact.md5:
                recorded = target.with_name(target.name + ".sha256").read_text().strip()
                if recorded != sha256:
                    raise HashMismatchError("recorded hash differs")
            _check(artifact, url, sha256, md5, size)
        except (HashMismatchError, OSError):
            self._reporter.warn(f"cached {artifact.filename} is corrupt; downloading it again")
            target.unlink(missing_ok=True)
            return None
        return Fetched(artifact, target, sha256, size)

    def _download(self, artifact: Artifact, url: str, target: Path, bar: Bar | None) -> Fetched:
        sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        out, tmp = self._cache.tempfile(target)
        try:
            with out:
                for chunk in self._stream(url):
                    if self._stop.is_set():
                        raise _Stopped()
                    out.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            _check(artifact, url, sha.hexdigest(), md5.hexdigest(), size)
            if not artifact.sha256 and not artifact.md5:
                target.with_name(target.name + ".sha256").write_text(sha.hexdigest() + "\n")
            # Only a verified file gets its final name, so the cache never holds a bad one.
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Fetched(artifact, target, sha.hexdigest(), size)

    def _stream(self, url: str) -> Iterable[bytes]:
        parts = urlsplit(url)
        if parts.scheme == "file":
            yield from self._stream_file(Path(unquote(parts.path)), url)
            return
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"unsupported URL scheme in {redact(url)}")
        request_url, headers = _prepare_request(url, self._credentials)
        timeout = urllib3.Timeout(connect=self._options.timeout, read=self._options.timeout)
        try:
            response = self._http.request(
                "GET",
                request_url,
                headers=headers,
                preload_content=False,
                timeout=timeout,
                retries=False,
                redirect=True,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise _Transient(type(exc).__name__) from None
        complete = False
        try:
            if response.status in _TRANSIENT_STATUS:
                raise _Transient(f"HTTP {response.status}")
            if response.status >= 400:
                raise FetchError(f"HTTP {response.status} for {redact(url)}; is the lock current?")
            try:
                yield from response.stream(_CHUNK)
            except urllib3.exceptions.HTTPError as exc:
                raise _Transient(type(exc).__name__) from None
            complete = True
        finally:
            if complete:
                response.release_conn()
            else:
                # An unread (or half-read) body would be taken for the next response if the
                # connection went back to the pool; a retry must start on a fresh one.
                response.close()

    @staticmethod
    def _stream_file(path: Path, url: str) -> Iterable[bytes]:
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk
        except OSError as exc:
            raise FetchError(f"cannot read {redact(url)}: {exc.strerror}") from None


def default_http() -> urllib3.PoolManager:
    return urllib3.PoolManager(maxsize=16, block=False)

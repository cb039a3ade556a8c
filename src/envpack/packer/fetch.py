"""Concurrent, retried, hash-while-streaming downloads into a verified cache.

The bytes come from rattler's own client (`rattler.networking.Client`, which knows http(s),
s3, gcs and oci channels, auth storage, mirrors, proxies and TLS), injected, never global.
What rattler leaves to its callers is here: hashing while streaming, a cache that only
renames checked files, bounded concurrency, retries a 404 does not get, a stall timeout, and
errors that name the URL without its secrets.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from rattler.networking import Client
from rattler.package_streaming import download_to_writer

from envpack.core.errors import FetchError, HashMismatchError
from envpack.core.hashing import hash_file
from envpack.core.layout import CHUNK
from envpack.core.models import Artifact, Download
from envpack.core.progress import Bar, Reporter
from envpack.packer.fetcherrors import Transient, classify, giving_up
from envpack.packer.urls import redact, strip_credentials

DEFAULT_CONCURRENCY = 50  # pixi's and rattler's concurrency.downloads default
# Schemes rattler's client serves (file:// and local paths are read here, without it).
NETWORK_SCHEMES = frozenset({"http", "https", "s3", "gcs", "oci"})
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class FetchOptions:
    concurrency: int | None = None  # None: the config's concurrency.downloads (default 50)
    attempts: int = 5
    timeout: float = 30.0  # seconds without a byte before an attempt is abandoned
    backoff: float = 0.5
    backoff_max: float = 8.0


@dataclass(frozen=True)
class Fetched:
    """A verified file in the cache and the facts measured while it streamed."""

    artifact: Artifact
    path: Path
    sha256: str
    size: int
    verified: bool = True  # False: a hit taken on the lock's sha256, for its reader to check


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

    def temp_path(self, target: Path) -> Path:
        """Where `target` is written before its check; the caller creates it inside the
        `try` that removes it, so a signal between the two cannot leave it behind."""
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")


def _hash_file(path: Path, *, md5_too: bool) -> tuple[str, str, int]:
    got = hash_file(path, md5=md5_too)  # md5 only when the lock has nothing better
    return got.sha256, got.md5, got.size


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


class _Sink:
    """The writer rattler streams into: file, hashes and progress in one pass, chunk by chunk."""

    def __init__(self, out: BinaryIO, bar: Bar | None, *, md5: bool) -> None:
        self._out = out
        self._bar = bar
        self.sha = hashlib.sha256()
        # md5 only when the lock has no sha256: a cold pack's CPU is better spent elsewhere.
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.size = 0
        self.last_data = time.monotonic()

    def write(self, chunk: bytes) -> int:
        self._out.write(chunk)
        self.sha.update(chunk)
        if self.md5 is not None:
            self.md5.update(chunk)
        self.size += len(chunk)
        self.last_data = time.monotonic()
        if self._bar is not None:
            self._bar.update(len(chunk))
        return len(chunk)


class Fetcher:
    def __init__(
        self,
        cache: Cache,
        client: Client,
        reporter: Reporter,
        options: FetchOptions | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        *,
        hash_hits: bool = True,
    ) -> None:
        # hash_hits=False: a hit with a sha256 in the lock comes back unhashed (verified=False)
        self._cache = cache
        self._hash_hits = hash_hits
        self._client = client
        self._reporter = reporter
        self._options = options or FetchOptions()
        self._sleep = sleep

    def fetch_all(self, downloads: Iterable[Download]) -> list[Fetched]:
        """Fetch every download; the first permanent failure cancels the rest and is raised.

        Ctrl-C or SIGTERM (raised in the main thread by the CLI) cancels every download at
        once; each removes its own `.part` file on the way out.
        """
        return asyncio.run(self._fetch_all(list(downloads)))

    def fetch(self, download: Download, bar: Bar | None = None) -> Fetched:
        return asyncio.run(self._fetch(download, bar))

    async def _fetch_all(self, items: list[Download]) -> list[Fetched]:
        total = sum(d.artifact.size or 0 for d in items) or None
        byte_bar = self._reporter.bar("download", total, "B")
        count_bar = self._reporter.bar("packages", len(items), "pkg")
        slots = asyncio.Semaphore(max(1, self._options.concurrency or DEFAULT_CONCURRENCY))

        async def one(download: Download) -> Fetched:
            async with slots:
                fetched = await self._fetch(download, byte_bar)
            count_bar.update(1)
            return fetched

        tasks = [asyncio.ensure_future(one(d)) for d in items]
        try:
            if tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                failed = next((t for t in tasks if t in done and t.exception() is not None), None)
                if failed is not None:
                    raise failed.exception()  # type: ignore[misc]
            return [t.result() for t in tasks]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            byte_bar.close()
            count_bar.close()

    async def _fetch(self, download: Download, bar: Bar | None) -> Fetched:
        artifact, url = download.artifact, download.url
        scheme = _scheme(url)
        if scheme not in NETWORK_SCHEMES and scheme != "file":
            raise FetchError(
                f"{artifact.label}: unsupported URL scheme '{scheme}' in {redact(url)}; envpack "
                "fetches http(s)://, s3://, gcs://, oci:// and file:// URLs and local paths"
            )
        target = self._cache.path_for(artifact, url)
        hit = await asyncio.to_thread(self._cached, artifact, url, target)
        if hit is not None:
            self._reporter.debug(f"cache hit {artifact.filename}")
            if bar is not None:
                bar.update(hit.size)
            return hit
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._download(artifact, url, target, bar, scheme)
            except Transient as exc:
                if attempt >= self._options.attempts:
                    raise giving_up(artifact.label, url, attempt, exc) from None
                delay = min(self._options.backoff_max, self._options.backoff * 2 ** (attempt - 1))
                # Jitter spreads retries of many parallel downloads hitting one flaky server.
                delay *= 0.5 + random.random()  # noqa: S311 - not security relevant
                self._reporter.debug(f"retrying {artifact.filename} in {delay:.1f}s: {exc}")
                await self._sleep(delay)

    def _cached(self, artifact: Artifact, url: str, target: Path) -> Fetched | None:
        if not target.is_file():
            return None
        if not self._hash_hits and artifact.sha256:
            size = target.stat().st_size
            if not artifact.size or artifact.size == size:  # a wrong size is hashed below
                return Fetched(artifact, target, artifact.sha256, size, verified=False)
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

    async def _download(
        self, artifact: Artifact, url: str, target: Path, bar: Bar | None, scheme: str
    ) -> Fetched:
        tmp = self._cache.temp_path(target)
        try:
            # Opened inside the try: an Interrupted raised the moment open() returns (a
            # signal lands between any two bytecodes) still removes the file.
            with tmp.open("wb") as out:
                sink = _Sink(out, bar, md5=not artifact.sha256)
                if scheme == "file":
                    await asyncio.to_thread(_read_local, url, sink)
                else:
                    await self._stream(url, sink)
            sha256 = sink.sha.hexdigest()
            md5 = sink.md5.hexdigest() if sink.md5 is not None else ""
            _check(artifact, url, sha256, md5, sink.size)
            if not artifact.sha256 and not artifact.md5:
                target.with_name(target.name + ".sha256").write_text(sha256 + "\n")
            # Only a verified file gets its final name, so the cache never holds a bad one.
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Fetched(artifact, target, sha256, sink.size)

    async def _stream(self, url: str, sink: _Sink) -> None:
        """One attempt through rattler's client, abandoned when no byte came for `timeout`."""
        task = asyncio.ensure_future(download_to_writer(self._client, url, sink))
        timeout = self._options.timeout
        try:
            while True:
                idle = time.monotonic() - sink.last_data
                if idle >= timeout:
                    raise Transient(f"no data for {timeout:g} s")
                done, _ = await asyncio.wait({task}, timeout=min(timeout - idle, 0.25))
                if done:
                    break
            error = task.exception()
        finally:
            if not task.done():
                # Cancelling drops rattler's request: its connection closes, no more writes.
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if error is not None:
            raise classify(error, url) from None


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower() if _SCHEME.match(url) else "file"


def _read_local(url: str, sink: _Sink) -> None:
    path = Path(unquote(urlsplit(url).path)) if _SCHEME.match(url) else Path(url)
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                sink.write(chunk)
    except OSError as exc:
        raise FetchError(f"cannot read {redact(url)}: {exc.strerror}") from None

"""The archive of a pack, written into its output with every package file read once.

A cache hit the fetcher did not hash (`Fetched.verified` False: taken on the lock's sha256)
is hashed here as its bytes pass into the archive, so a warm pack reads each file once
instead of once to check it and once to write it. The check still completes before the
output is renamed into place: a file that turns out corrupt stops the write, is removed
from the cache, downloaded again, and the archive is rewritten from its first byte.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from envpack.core.layout import CHUNK
from envpack.core.models import Manifest, Plan
from envpack.core.progress import Reporter
from envpack.core.selfextract import TRAILER_SIZE, head, trailer
from envpack.packer.appfile import App
from envpack.packer.archivewrite import ArchiveWriter, Compression, Writable
from envpack.packer.fetch import Fetched
from envpack.packer.output import HashingWriter
from envpack.packer.packcontents import manifest_for, shipped, subject, write_members
from envpack.packer.sbomitems import plan_items
from envpack.packer.sbommemo import sbom_for


@dataclass(frozen=True)
class Layout:
    """What goes into the output besides the archive: the self-extracting parts."""

    compression: Compression
    level: int
    unpacker: Path | None = None
    app: App | None = None


class Corrupt(Exception):
    """An unverified cache file whose bytes are not the lock's (raised mid-write)."""

    def __init__(self, item: Fetched) -> None:
        super().__init__(item.artifact.filename)
        self.item = item


class _Hashing:
    """The file's bytes on their way into the archive, hashed as they pass."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        self.sha.update(data)
        self.size += len(data)
        return data


class _Checking:
    """`write_members`' writer: the archive writer, checking each unverified file it copies."""

    def __init__(self, writer: ArchiveWriter, unverified: dict[Path, Fetched]) -> None:
        self._writer = writer
        self._unverified = unverified

    def add_bytes(self, name: str, data: bytes) -> None:
        self._writer.add_bytes(name, data)

    def add_file(self, name: str, path: Path) -> None:
        item = self._unverified.get(path)
        if item is None:
            self._writer.add_file(name, path)
            return
        with path.open("rb") as fh:
            hashing = _Hashing(fh)
            self._writer.add_stream(name, item.size, hashing)
        if hashing.sha.hexdigest() != item.sha256 or hashing.size != item.size:
            raise Corrupt(item)


def write_pack(
    out: HashingWriter,
    plan: Plan,
    fetched: list[Fetched],
    layout: Layout,
    reporter: Reporter,
    refetch: Callable[[Fetched], Fetched],
    memo: Path | None = None,
) -> Manifest:
    """Write the whole output; a corrupt cache file is fetched again (`refetch`) and the
    output rewritten. Each artifact is fetched again at most once: a download is verified.
    `memo`: where SBOMs built before are remembered (sbommemo.py)."""
    while True:
        try:
            return _write_once(out, plan, fetched, layout, reporter, memo)
        except Corrupt as exc:
            bad = exc.item
            reporter.warn(f"cached {bad.artifact.filename} is corrupt; downloading it again")
            bad.path.unlink(missing_ok=True)
            fresh = refetch(bad)
            fetched = [fresh if f is bad else f for f in fetched]
            out.restart()


def _write_once(
    out: HashingWriter,
    plan: Plan,
    fetched: list[Fetched],
    layout: Layout,
    reporter: Reporter,
    memo: Path | None,
) -> Manifest:
    artifacts = shipped(fetched)
    # From the lock's hashes where the files are checked while written (a mismatch rewrites
    # everything), else from the verified downloads': the SBOM states what the archive holds.
    sbom = sbom_for(plan_items(plan, artifacts), subject(plan), memo)
    manifest = manifest_for(plan, artifacts, sbom)
    unpacker, app = layout.unpacker, layout.app
    offset = head_at = 0
    if unpacker is not None:
        if app is not None:
            head_at = out.write(app.prefix(fetched, unpacker.stat().st_size, reporter))
        head_at += _copy_into(unpacker, out)
        out.write(head(bytes(32), 0, 0))
        offset = head_at + TRAILER_SIZE
    # The payload's own hash only for a self-extracting file's head: hashing every output
    # byte twice (here and in `out`) cost a plain warm pack ~0.2 s of CPU.
    payload = HashingWriter(out, background=False) if unpacker is not None else None
    unverified = {f.path: f for f in fetched if not f.verified}
    bar = reporter.bar("write", sum(f.size for f in fetched), "B")
    try:
        with ArchiveWriter(payload or out, layout.compression, layout.level) as writer:
            write_members(_Checking(writer, unverified), plan, fetched, manifest, sbom, bar)
    finally:
        bar.close()
    if payload is not None:
        out.write(trailer(payload.digest(), offset, payload.size))
        out.patch(head_at, head(payload.digest(), offset, payload.size))
    out.flush()
    return manifest


def _copy_into(source: Path, out: Writable) -> int:
    with source.open("rb") as fh:
        shutil.copyfileobj(fh, out, CHUNK)
    return source.stat().st_size

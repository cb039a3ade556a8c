"""Image layers: which files go in which layer, and each layer as a reproducible gzip tar.

One layer per package, so two images that share a package share that layer's digest (in a
registry and on every node). Small packages are grouped into a fixed number of buckets
chosen by a hash of the package name alone, so a package lands in the same bucket whatever
else the env holds: adding one package changes at most the one bucket it joins.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from envpack.packer.archivewrite import fixed_tarinfo

MAX_LAYERS = 100  # overlayfs' lower-dir limit is 128 (docker: 125); room left for a base
BUCKETS = 24  # small packages share one of these
LARGE = 1 << 20  # installed bytes from which a package always gets its own layer
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One package's (or wheel's) files, as paths relative to the prefix."""

    name: str
    files: tuple[str, ...]
    size: int


@dataclass(frozen=True)
class Group:
    packages: tuple[str, ...]
    files: tuple[str, ...]


@dataclass(frozen=True)
class Layer:
    """A written layer blob: `digest` of the gzip bytes, `diff_id` of the tar inside."""

    path: Path
    digest: str
    diff_id: str
    size: int
    packages: tuple[str, ...]


def group(parts: Sequence[Part]) -> list[Group]:
    """Large parts alone, small ones in name-hashed buckets; at most MAX_LAYERS - 1 groups."""
    large = sorted((p for p in parts if p.size >= LARGE), key=lambda p: (-p.size, p.name))
    # Only an env with more than ~75 large packages moves its smallest large ones to buckets.
    alone = large[: MAX_LAYERS - 1 - BUCKETS]
    alone_names = {p.name for p in alone}
    buckets: dict[int, list[Part]] = {}
    for part in parts:
        if part.name not in alone_names:
            buckets.setdefault(_bucket(part.name), []).append(part)
    groups = [Group((p.name,), tuple(sorted(p.files))) for p in alone]
    for _, members in sorted(buckets.items()):
        members.sort(key=lambda p: p.name)
        files = sorted({f for p in members for f in p.files})
        groups.append(Group(tuple(p.name for p in members), tuple(files)))
    return groups


def _bucket(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % BUCKETS


def write_layer(root: Path, files: Iterable[str], out_dir: Path, packages: Sequence[str]) -> Layer:
    """`root/<file>` for each file (a path relative to the image's /) in a gzip tar blob.

    Deterministic: sorted names, parent directories included, mtime 0, uid/gid 0, normalised
    modes, no user names, no gzip name or time.
    """
    names = sorted(set(files))
    dirs = {str(p) for n in names for p in PurePosixPath(n).parents if str(p) != "."}
    handle, tmp_name = tempfile.mkstemp(prefix=".layer-", dir=out_dir)
    tmp = Path(tmp_name)
    raw_hash = hashlib.sha256()
    with os.fdopen(handle, "wb") as fh:
        sink = _Hashing(fh)
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=6) as gz:
            tee = _Tee(gz, raw_hash)
            with tarfile.open(fileobj=tee, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                # One sorted order: a directory sorts before what it holds.
                for name in sorted({*dirs, *names}):
                    if name in dirs and name not in names:
                        tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
                    else:
                        _add(tar, root / name, name)
    digest = sink.hash.hexdigest()
    path = out_dir / digest
    tmp.replace(path)
    return Layer(path, digest, raw_hash.hexdigest(), sink.size, tuple(packages))


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    name = arcname.lstrip("/")
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        info = _info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = str(path.readlink())
        tar.addfile(info)
    elif stat.S_ISDIR(st.st_mode):
        tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
    else:
        info = _info(name, tarfile.REGTYPE, 0o755 if st.st_mode & 0o111 else 0o644)
        info.size = st.st_size
        with path.open("rb") as fh:
            tar.addfile(info, fh)


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    return fixed_tarinfo(name.lstrip("/"), kind=kind, mode=mode)


def write_blob(out_dir: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (out_dir / digest).write_bytes(data)
    return digest


class _Hashing(io.RawIOBase):
    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.hash.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)


class _Tee(io.RawIOBase):
    """The uncompressed tar bytes: hashed for the config's diff_id, then gzipped."""

    def __init__(self, sink: gzip.GzipFile, digest: hashlib._Hash) -> None:
        self._sink = sink
        self._digest = digest

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._digest.update(data)
        self._sink.write(data)
        return len(data)

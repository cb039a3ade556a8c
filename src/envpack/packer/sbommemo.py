"""The SBOM of a pack, remembered in the download cache: a warm pack of the same lock builds none.

Building it (importing cyclonedx, making the document, rendering it) takes ~0.2 s of a
warm pack's ~0.6 s. The document is a pure function of its items, its subject and the
code that renders it, so it is kept under a key over all three: the inputs as canonical
JSON, envpack's version, and the size and mtime of every module that shapes its bytes (a
library upgraded in place, or a dev checkout's edited sbom.py, is another key, the way
Python checks its own .pyc files). A memo file starts with its own sha256: a damaged one
is built again, never shipped. A cold pack builds the document its lock describes on a
thread while the downloads run (`warm_up`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict
from importlib.util import find_spec
from pathlib import Path

from envpack import __version__
from envpack.packer.sbomitems import Item, Subject

MEMO_DIR = "sbom"
# The modules whose code decides the document's bytes: ours and the libraries rendering it.
_SHAPERS = (
    "envpack.packer.sbom",
    "cyclonedx",
    "py_serializable",
    "packageurl",
    "license_expression",
    "sortedcontainers",
)
_HEAD = b"sha256:"
# Documents being built on a thread (warm_up), by memo path: sbom_for waits for its own.
# The thread writes no file: a pack that fails exits at once, and leaves no memo half-written.
_BUILDING: dict[Path, tuple[threading.Thread, list[bytes]]] = {}


def sbom_for(items: Sequence[Item], subject: Subject, memo: Path | None) -> bytes:
    """The SBOM document of `items`: remembered in `memo` (a dir) if it was built before."""
    path = _memo_path(items, subject, memo)
    if path is not None:
        thread, built = _BUILDING.pop(path, (None, []))
        if thread is not None:
            thread.join()
        if built:
            _store(path, built[0])
            return built[0]
        if (known := _read(path)) is not None:
            return known
    from envpack.packer.sbom import sbom_json

    document = sbom_json(items, subject)
    if path is not None:
        _store(path, document)
    return document


def warm_up(items: Sequence[Item], subject: Subject, memo: Path) -> None:
    """Build and remember the document of `items` (the lock's) on a thread, unless it is
    remembered: a cold pack then pays cyclonedx's import (~0.12 s) and the build (~0.08 s)
    while its downloads run. Downloads that bring other hashes make another document, which
    sbom_for builds itself; so does a failure here, and reports it."""
    path = _memo_path(items, subject, memo)
    if path is None or path.is_file() or path in _BUILDING:
        return
    built: list[bytes] = []
    thread = threading.Thread(
        target=_build, args=(list(items), subject, built), name="sbom", daemon=True
    )
    _BUILDING[path] = (thread, built)
    thread.start()


def _build(items: list[Item], subject: Subject, built: list[bytes]) -> None:
    with contextlib.suppress(Exception):
        from envpack.packer.sbom import sbom_json

        built.append(sbom_json(items, subject))


def _memo_path(items: Sequence[Item], subject: Subject, memo: Path | None) -> Path | None:
    if memo is None:
        return None
    try:
        inputs = json.dumps(
            {
                "envpack": __version__,
                "code": [_stamp(name) for name in _SHAPERS],
                "subject": asdict(subject),
                "items": [[asdict(i.artifact), dict(i.record), i.url, i.injected] for i in items],
            },
            sort_keys=True,
            separators=(",", ":"),
        )
    except (TypeError, ValueError):  # a record field JSON cannot hold: nothing to key on
        return None
    return memo / MEMO_DIR / f"{hashlib.sha256(inputs.encode()).hexdigest()}.cdx.json"


def _stamp(module: str) -> list[object]:
    spec = find_spec(module)
    origin = spec.origin if spec is not None else None
    if origin is None:
        return [module, None]
    try:
        stat = Path(origin).stat()
    except OSError:
        return [module, origin, None]
    return [module, origin, stat.st_size, stat.st_mtime_ns]


def _read(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head, _, document = data.partition(b"\n")
    if head != _HEAD + hashlib.sha256(document).hexdigest().encode():
        return None
    return document


def _store(path: Path, document: bytes) -> None:
    # Written whole and renamed: a concurrent pack reads the old memo, the new one, or none.
    # A cache that takes no writes only means the next pack builds the document again.
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".sbom-", suffix=".part", dir=path.parent)
        part = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(_HEAD + hashlib.sha256(document).hexdigest().encode() + b"\n")
                out.write(document)
            part.replace(path)
        except BaseException:  # a full disk (suppressed below) or a signal: no temp left
            part.unlink(missing_ok=True)
            raise

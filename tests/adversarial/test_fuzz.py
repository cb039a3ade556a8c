"""Property tests the unit suites lack: lock planning over random lock files, and whole
archives (random bytes, real archives with mutated headers) through `iter_members` and
through the `envunpack` CLI. No input may raise anything but EnvpackError, and the CLI may
only succeed or print one `error:` line.

(tests/test_manifest.py and tests/test_archive.py already fuzz the manifest parser, single
tar members and raw bytes into the reader; they are not repeated here.)
"""

from __future__ import annotations

import contextlib
import functools
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envpack.core.archive import iter_members
from envpack.core.errors import EnvpackError
from envpack.packer.lockfile import plan_lock
from tests.adversarial import craft
from tests.adversarial.conftest import Packed, one_error_line, run

PLATFORMS = ["linux-64", "linux-aarch64", "osx-arm64", "noarch", "", "linux-64\x00"]
text = st.text(max_size=40)
hexes = st.text("0123456789abcdef", min_size=0, max_size=70)
urls = st.one_of(
    st.sampled_from(
        [
            "https://conda.example.com/conda-forge/linux-64/a-1.0-h0_0.conda",
            "https://x.invalid/t/secret/noarch/b-2-py_0.tar.bz2",
            "http://u:p@host.invalid/linux-64/c-1-0.tar.bz2",
            "file:///etc/passwd",
            "../../escape.whl",
            "https://files.example.com/p/pkg-1.0-py3-none-any.whl",
            "git+https://git.example.com/x/y",
        ]
    ),
    text,
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), text)
package = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["conda", "pypi"]),
        "url": urls,
        "name": text,
        "version": st.one_of(text, st.sampled_from(["1.0", "2.0.post1"])),
        "build": text,
        "sha256": hexes,
        "md5": hexes,
        "size": scalars,
        "depends": st.lists(text, max_size=3),
        "subdir": st.sampled_from(PLATFORMS),
    },
    optional={"extra": scalars},
)


@st.composite
def lock_documents(draw: st.DrawFn) -> str:
    """A pixi.lock-shaped document (JSON, which is YAML) with random holes and values."""
    packages = draw(st.lists(package, max_size=4))
    platforms = draw(st.lists(st.sampled_from(PLATFORMS), max_size=3))
    env = {
        "channels": [{"url": draw(urls)}],
        "packages": {
            p: [{pkg["kind"]: pkg["url"]} for pkg in draw(st.permutations(packages))]
            for p in platforms
        },
    }
    entries = []
    for pkg in packages:
        entry: dict[str, object] = {
            str(pkg["kind"]): pkg["url"],
            **{k: v for k, v in pkg.items() if k not in ("kind", "url")},
        }
        entries.append(entry)
    doc: dict[str, object] = {
        "version": draw(st.sampled_from([3, 4, 5, 6, 7, 8, "6", None, -1])),
        "environments": {draw(st.sampled_from(["default", "other", ""])): env},
        "packages": entries,
    }
    if draw(st.booleans()):
        doc["platforms"] = [{"name": p, "virtual_packages": [draw(text)]} for p in platforms]
    if draw(st.booleans()):
        del doc[draw(st.sampled_from(sorted(doc)))]
    return json.dumps(doc)


def _plan(document: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lock = Path(tmp) / "pixi.lock"
        lock.write_bytes(document.encode() if isinstance(document, str) else document)
        for platform in ("linux-64", "osx-arm64"):
            with contextlib.suppress(EnvpackError):
                plan_lock(lock, "default", platform)


@settings(max_examples=300, deadline=None)
@given(lock_documents())
def test_random_lock_documents_only_raise_envpack_errors(document: str) -> None:
    _plan(document)


@functools.cache
def _real_lock_text() -> str:
    from devtools.fixtures.channel import build

    return build().lock_v6.read_text()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_locks_only_raise_envpack_errors(data: st.DataObject) -> None:
    """The real fixture lock with lines dropped, duplicated or cut, and bytes replaced."""
    lines = _real_lock_text().splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        if not lines:
            break
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "dup", "cut", "replace", "indent"]))
        if action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "cut":
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))]
        elif action == "indent":
            lines[i] = " " + lines[i]
        else:
            lines[i] = data.draw(st.text(max_size=60))
    _plan("\n".join(lines) + "\n")


# --- whole archives ----------------------------------------------------------------------------


@functools.cache
def _small_tar(archive: Path) -> bytes:
    """A consistent archive of three small packages, as a plain tar (about 60 KB)."""
    from tests.adversarial.test_malicious import SMALL

    entries = craft.keep_artifacts(craft.read_entries(archive), SMALL)
    return craft.tar_bytes(entries)


def _header_offsets(tar: bytes) -> list[int]:
    """Start offsets of every header block (PAX extended headers included)."""
    import tarfile

    offsets, offset = [], 0
    while offset + 512 <= len(tar) and tar[offset : offset + 512] != b"\0" * 512:
        offsets.append(offset)
        size = int(tar[offset + 124 : offset + 136].rstrip(b"\0 ") or b"0", 8)
        offset += tarfile.BLOCKSIZE + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return offsets


def _mutate(tar: bytes, data: st.DataObject) -> bytes:
    """Overwrite 1–8 bytes inside header blocks, fixing the checksum half of the time so the
    mutation reaches the field parsers instead of stopping at the checksum check."""
    out = bytearray(tar)
    offsets = _header_offsets(tar)
    start = data.draw(st.sampled_from(offsets))
    for _ in range(data.draw(st.integers(1, 8))):
        out[start + data.draw(st.integers(0, 511))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        block = out[start : start + 512]
        block[148:156] = b" " * 8
        out[start + 148 : start + 156] = b"%06o\0 " % sum(block)
    return bytes(out)


def _read_all(raw: bytes) -> None:
    import io

    for member in iter_members(io.BytesIO(raw)):
        while member.stream.read(1 << 16):
            pass


@pytest.fixture(scope="module")
def small_tar(packed: Packed) -> bytes:
    return _small_tar(packed.zstd)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_mutated_headers_only_raise_envpack_errors(small_tar: bytes, data: st.DataObject) -> None:
    mutated = _mutate(small_tar, data)
    for raw in (mutated, craft.zstd(mutated)):
        with contextlib.suppress(EnvpackError):
            _read_all(raw)


@pytest.mark.slow
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_envunpack_cli_on_mutated_archives(
    small_tar: bytes, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Through the real CLI: success with a complete env, or one error line and no -o."""
    where = tmp_path_factory.mktemp("fuzz-cli")
    choice = data.draw(st.sampled_from(["headers", "bytes", "zstd-headers"]))
    if choice == "bytes":
        raw = data.draw(st.binary(max_size=4000))
    else:
        raw = _mutate(small_tar, data)
        raw = craft.zstd(raw) if choice == "zstd-headers" else raw
    archive = where / "fuzz.tar"
    archive.write_bytes(raw)
    out = where / "out"
    result = run("envunpack", archive, "-o", out, "-q", timeout=60)
    if result.returncode == 0:
        # A mutation of a field nobody relies on (mtime, uname, …) may be harmless.
        assert (out / "env" / "conda-meta" / "history").is_file()
    else:
        one_error_line(result)
        assert not out.exists()

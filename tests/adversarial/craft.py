"""Builders of crafted, hostile inputs: archives, conda packages, wheels and zstd bombs.

Everything starts from real bytes (the fixture env's archive and its packages) and is
rewritten the way an attacker would: with the manifest and repodata made consistent again,
so the only thing that can stop the input is the check under test.
"""

from __future__ import annotations

import base64
import copy
import csv
import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import zstandard

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MANIFEST = "envpack.json"
_RLE_BLOCK = 128 * 1024  # the largest zstd block, and the window we declare


@dataclass
class Entry:
    """One tar member: its header and its data (empty for links, devices, dirs)."""

    info: tarfile.TarInfo
    data: bytes = b""

    @property
    def name(self) -> str:
        return self.info.name


# --- tar and zstd ------------------------------------------------------------------------------


def decompress(raw: bytes) -> bytes:
    """The tar inside an archive, zstd or plain, chosen by magic bytes as envunpack does."""
    if raw[:4] != ZSTD_MAGIC:
        return raw
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True)
    return reader.read()


def read_entries(path_or_bytes: Path | bytes) -> list[Entry]:
    raw = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    out = []
    with tarfile.open(fileobj=io.BytesIO(decompress(raw)), mode="r:") as tar:
        for info in tar:
            data = b""
            if info.isreg():
                stream = tar.extractfile(info)
                assert stream is not None
                data = stream.read()
            out.append(Entry(copy.copy(info), data))
    return out


def member(
    name: str,
    data: bytes = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    mode: int = 0o644,
    linkname: str = "",
    size: int | None = None,
) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    info.size = len(data) if size is None else size
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return Entry(info, data)


def header(info: tarfile.TarInfo) -> bytes:
    """The header blocks of one member, PAX so that huge sizes and long names fit."""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def tar_bytes(entries: Iterable[Entry], *, end: bool = True) -> bytes:
    """A tar written header by header, so nothing is normalised away (duplicates stay)."""
    out = bytearray()
    for entry in entries:
        out += header(entry.info)
        if entry.info.isreg():
            out += padded(entry.data)
    if end:
        out += b"\0" * (2 * tarfile.BLOCKSIZE)
    return bytes(out)


def zstd(data: bytes, level: int = 3) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(data)


def rle_zeros(size: int) -> bytes:
    """A valid zstd frame of `size` zero bytes, 4 bytes per 128 KiB: a bomb of any size.

    Hand-built (frame header, then RLE blocks) because compressing gigabytes of zeros
    with the library would take seconds and gigabytes of memory in the test itself.
    """
    out = bytearray(ZSTD_MAGIC)
    out.append(0x00)  # frame header descriptor: no content size, no checksum, no dictionary
    out.append(0x38)  # window descriptor: 2**(10 + 7) = 128 KiB
    full, rest = divmod(size, _RLE_BLOCK)
    sizes = [_RLE_BLOCK] * full + ([rest] if rest else [])
    for index, block in enumerate(sizes):
        last = int(index == len(sizes) - 1)
        block_header = last | (1 << 1) | (block << 3)  # Block_Type 1 = RLE
        out += block_header.to_bytes(3, "little") + b"\0"
    if not sizes:
        out += (1 | (1 << 1)).to_bytes(3, "little") + b"\0"  # one empty last block
    return bytes(out)


def write_archive(path: Path, entries: Iterable[Entry], compression: str = "zstd") -> Path:
    data = tar_bytes(entries)
    path.write_bytes(zstd(data) if compression == "zstd" else data)
    return path


# --- manifest and repodata ---------------------------------------------------------------------


def find(entries: list[Entry], name: str) -> Entry:
    for entry in entries:
        if entry.name == name:
            return entry
    raise KeyError(name)


def artifacts(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if e.name.endswith((".conda", ".tar.bz2", ".whl"))]


def set_data(entry: Entry, data: bytes) -> None:
    entry.data = data
    entry.info.size = len(data)


def edit_json(entries: list[Entry], name: str, edit: Callable[[dict[str, object]], None]) -> None:
    entry = find(entries, name)
    doc = json.loads(entry.data)
    edit(doc)
    set_data(entry, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def manifest_artifact(entries: list[Entry], path: str) -> dict[str, object]:
    doc = json.loads(find(entries, MANIFEST).data)
    for artifact in doc["artifacts"]:
        if artifact["path"] == path:
            return dict(artifact)
    raise KeyError(path)


def replace_artifact(entries: list[Entry], path: str, data: bytes) -> None:
    """Swap an artifact's bytes and make the manifest and repodata agree, as an attacker would."""
    set_data(find(entries, path), data)
    sha256 = hashlib.sha256(data).hexdigest()
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()

    def fix_manifest(doc: dict[str, object]) -> None:
        for artifact in doc["artifacts"]:  # type: ignore[attr-defined]
            if artifact["path"] == path:
                artifact.update(sha256=sha256, size=len(data))
                if "md5" in artifact:
                    artifact["md5"] = md5

    edit_json(entries, MANIFEST, fix_manifest)
    if not path.startswith("channel/"):
        return
    _, subdir, filename = path.split("/")

    def fix_repodata(doc: dict[str, object]) -> None:
        for key in ("packages", "packages.conda"):
            records = doc.get(key, {})
            assert isinstance(records, dict)
            if filename in records:
                records[filename].update(sha256=sha256, md5=md5, size=len(data))

    edit_json(entries, f"channel/{subdir}/repodata.json", fix_repodata)


def add_artifact(entries: list[Entry], path: str, data: bytes, *, kind: str, name: str) -> None:
    """Append an artifact with a truthful manifest entry (repodata is the caller's business)."""
    entries.append(member(path, data))

    def add(doc: dict[str, object]) -> None:
        doc["artifacts"].append(  # type: ignore[attr-defined]
            {
                "path": path,
                "kind": kind,
                "name": name,
                "version": "1.0",
                "build": "",
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
        )

    edit_json(entries, MANIFEST, add)


def insert_after(entries: list[Entry], name: str, *new: Entry) -> list[Entry]:
    index = next(i for i, e in enumerate(entries) if e.name == name)
    return [*entries[: index + 1], *new, *entries[index + 1 :]]


# --- conda packages ----------------------------------------------------------------------------


def _tar_of(entries: Iterable[Entry]) -> bytes:
    return tar_bytes(entries)


def rewrite_tar_bz2(data: bytes, edit: Callable[[list[Entry]], list[Entry]]) -> bytes:
    import bz2

    entries = read_entries(bz2.decompress(data))
    return bz2.compress(_tar_of(edit(entries)))


def rewrite_conda(data: bytes, edit: Callable[[list[Entry]], list[Entry]]) -> bytes:
    """Rewrite a .conda: `edit` sees the info and pkg tarballs' members as one list."""
    src = zipfile.ZipFile(io.BytesIO(data))
    info_name = next(n for n in src.namelist() if n.startswith("info-"))
    pkg_name = next(n for n in src.namelist() if n.startswith("pkg-"))
    entries = read_entries(decompress(src.read(info_name))) + read_entries(
        decompress(src.read(pkg_name))
    )
    edited = edit(entries)
    info = [e for e in edited if e.name.startswith("info/")]
    pkg = [e for e in edited if not e.name.startswith("info/")]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        dst.writestr("metadata.json", src.read("metadata.json"))
        dst.writestr(pkg_name, zstd(_tar_of(pkg)))
        dst.writestr(info_name, zstd(_tar_of(info)))
    return out.getvalue()


def rewrite_package(
    filename: str, data: bytes, edit: Callable[[list[Entry]], list[Entry]]
) -> bytes:
    if filename.endswith(".conda"):
        return rewrite_conda(data, edit)
    return rewrite_tar_bz2(data, edit)


def add_package_file(
    path: str, content: bytes, *, tar_name: str | None = None, path_type: str = "hardlink"
) -> Callable[[list[Entry]], list[Entry]]:
    """An edit that adds a file to a package: in info/paths.json and (unless None) in the tar."""

    def edit(entries: list[Entry]) -> list[Entry]:
        paths = find(entries, "info/paths.json")
        doc = json.loads(paths.data)
        record: dict[str, object] = {"_path": path, "path_type": path_type}
        if path_type == "hardlink":
            record.update(sha256=hashlib.sha256(content).hexdigest(), size_in_bytes=len(content))
        doc["paths"].append(record)
        set_data(paths, json.dumps(doc, indent=2).encode())
        name = path if tar_name is None else tar_name
        if path_type == "softlink":
            entries.append(member(name, kind=tarfile.SYMTYPE, linkname=content.decode()))
        else:
            entries.append(member(name, content))
        return entries

    return edit


def chain(*edits: Callable[[list[Entry]], list[Entry]]) -> Callable[[list[Entry]], list[Entry]]:
    def edit(entries: list[Entry]) -> list[Entry]:
        for one in edits:
            entries = one(entries)
        return entries

    return edit


# --- wheels ------------------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def wheel(
    dist: str,
    files: dict[str, bytes],
    *,
    record_extra: Iterable[str] = (),
    version: str = "1.0",
) -> tuple[str, bytes]:
    """A py3-none-any wheel whose RECORD matches its members (plus `record_extra` rows)."""
    info = f"{dist}-{version}.dist-info"
    members = dict(files)
    members[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    )
    members[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: envpack-adversarial\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    for name, data in members.items():
        writer.writerow([name, _record_hash(data), str(len(data))])
    for extra in record_extra:
        writer.writerow([extra, "", ""])
    writer.writerow([f"{info}/RECORD", "", ""])
    members[f"{info}/RECORD"] = rows.getvalue().encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return f"{dist}-{version}-py3-none-any.whl", out.getvalue()


def keep_artifacts(entries: list[Entry], keep: Iterable[str]) -> list[Entry]:
    """A smaller but consistent archive: only `keep` in the members, manifest and repodata."""
    wanted = set(keep)
    dropped = {e.name for e in artifacts(entries)} - wanted
    out = [e for e in entries if e.name not in dropped]

    def fix_manifest(doc: dict[str, object]) -> None:
        doc["artifacts"] = [a for a in doc["artifacts"] if a["path"] in wanted]  # type: ignore[attr-defined]

    edit_json(out, MANIFEST, fix_manifest)
    for entry in list(out):
        if not entry.name.endswith("/repodata.json"):
            continue
        subdir = entry.name.split("/")[1]

        def fix_repodata(doc: dict[str, object], subdir: str = subdir) -> None:
            for key in ("packages", "packages.conda"):
                records = doc.get(key, {})
                assert isinstance(records, dict)
                for filename in list(records):
                    if f"channel/{subdir}/{filename}" not in wanted:
                        del records[filename]

        edit_json(out, entry.name, fix_repodata)
    return out

"""Malicious archives, each built from the real fixture archive and refused by envunpack.

Every case runs the real `envunpack` under rlimits and checks: a non-zero exit with exactly
one `error:` line (no traceback, no panic), nothing changed in the parent of `-o` (crafted
paths aim there and at `parent/victim/`), and `-o` itself gone again.
"""

from __future__ import annotations

import copy
import functools
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from _pytest.mark import ParameterSet

from tests.adversarial import craft
from tests.adversarial.conftest import Limits, Packed, Workspace, run
from tests.adversarial.craft import Entry, member

LIB = "channel/linux-64/libhello-1.0.0-h9087c05_0.tar.bz2"  # small, a .tar.bz2, no python
HELLO = "channel/linux-64/hello-c-1.0.0-hccbdfe7_0.conda"  # small, a .conda
ACTIVATION = "channel/noarch/fixture-activation-1.0.0-h4616a5c_0.conda"
SMALL = (LIB, HELLO, ACTIVATION)
MB = 1 << 20
GB = 1 << 30
# Far below what any of these bombs would take if they were inflated: 16 GiB and more.
RSS_LIMIT_MB = 600
# A bomb must hit our checks, never the machine: no file over 1 GiB, bounded CPU.
BOMB_LIMITS = Limits(file_size=1 << 30, cpu_seconds=60)


@functools.cache
def _base_entries(archive: Path) -> list[Entry]:
    return craft.read_entries(archive)


def base(packed: Packed, *, small: bool = False) -> list[Entry]:
    """The real archive's members; `small` keeps three packages without python (fast links)."""
    entries = copy.deepcopy(_base_entries(packed.zstd))
    return craft.keep_artifacts(entries, SMALL) if small else entries


# --- cases -------------------------------------------------------------------------------------

# A case builds the archive file for a workspace; `needles` must appear in the error line.
Builder = Callable[[list[Entry], Workspace, Path], Path]


@dataclass(frozen=True)
class Case:
    build: Builder
    needles: tuple[str, ...] = ()
    bug: str | None = None  # a known bug: the case is xfail(strict) with this reason
    slow: bool = False


def _early(*new: Entry) -> Builder:
    """The hostile members right after envpack.json, before any artifact."""

    def build(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
        return craft.write_archive(dest, craft.insert_after(entries, craft.MANIFEST, *new))

    return build


def _built(make: Callable[[list[Entry], Workspace], list[Entry]]) -> Builder:
    def build(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
        return craft.write_archive(dest, make(entries, ws))

    return build


def _abs(ws: Workspace, name: str) -> str:
    return str(ws.parent / name)


def _absolute(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
    evil = member(_abs(ws, "escape-abs.txt"), b"pwned\n")
    return craft.write_archive(dest, craft.insert_after(entries, craft.MANIFEST, evil))


def _absolute_long(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
    # Over 100 characters: the name travels in a PAX header, not the ustar name field.
    evil = member(_abs(ws, "escape-" + "x" * 120 + ".conda"), b"pwned\n")
    return craft.write_archive(dest, craft.insert_after(entries, craft.MANIFEST, evil))


def _symlink_then_write(target: Callable[[Workspace], str]) -> Builder:
    def build(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
        link = member("channel/linux-64", kind=tarfile.SYMTYPE, linkname=target(ws))
        through = member("channel/linux-64/evil-1.0-0.conda", b"pwned\n")
        return craft.write_archive(dest, craft.insert_after(entries, craft.MANIFEST, link, through))

    return build


def _hardlink(target: Callable[[Workspace], str]) -> Builder:
    def build(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
        link = member(HELLO, kind=tarfile.LNKTYPE, linkname=target(ws))
        rest = [e for e in entries if e.name != HELLO]
        return craft.write_archive(dest, craft.insert_after(rest, craft.MANIFEST, link))

    return build


def _special(kind: bytes) -> Builder:
    return _early(member("channel/linux-64/dev-1.0-0.conda", kind=kind))


def _mode(mode: int) -> Builder:
    def make(entries: list[Entry], ws: Workspace) -> list[Entry]:
        craft.find(entries, HELLO).info.mode = mode
        return entries

    return _built(make)


def _duplicate_artifact(entries: list[Entry], ws: Workspace) -> list[Entry]:
    # The second copy would overwrite the verified first one if the reader let it through.
    original = craft.find(entries, LIB)
    evil = Entry(copy.copy(original.info), original.data[:-1] + b"\0")
    index = entries.index(original)
    return [*entries[: index + 1], evil, *entries[index + 1 :]]


def _duplicate_normalised(entries: list[Entry], ws: Workspace) -> list[Entry]:
    original = craft.find(entries, LIB)
    evil = Entry(copy.copy(original.info), original.data)
    evil.info.name = "./" + LIB
    index = entries.index(original)
    return [*entries[: index + 1], evil, *entries[index + 1 :]]


def _duplicate_manifest(entries: list[Entry], ws: Workspace) -> list[Entry]:
    manifest = craft.find(entries, craft.MANIFEST)
    doc = json.loads(manifest.data)
    doc["platform"] = "linux-aarch64"
    second = member(craft.MANIFEST, json.dumps(doc).encode())
    return craft.insert_after(entries, craft.MANIFEST, second)


# --- bombs -------------------------------------------------------------------------------------


def _bomb(entries: list[Entry], at: str, size: int, dest: Path, *, replace: bool) -> Path:
    """zstd that inflates `size` zero bytes as the data of member `at`; tiny on disk.

    The stream is three zstd frames: the tar up to the bomb's header, the zeros (hand-made
    RLE blocks), the rest of the tar. envunpack reads across frames, as zstd allows.
    """
    index = next(i for i, e in enumerate(entries) if e.name == at)
    info = copy.copy(entries[index].info)
    info.size = size
    head = craft.tar_bytes(entries[: index + (0 if replace else 1)], end=False) + craft.header(info)
    tail_entries = entries[index + 1 :]
    tail = b"\0" * (-size % tarfile.BLOCKSIZE) + craft.tar_bytes(tail_entries)
    dest.write_bytes(craft.zstd(head) + craft.rle_zeros(size) + craft.zstd(tail))
    return dest


def _header_size_bomb(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
    # The manifest says a few KB; the member's header (and its data) say 16 GiB.
    return _bomb(entries, LIB, 16 * GB, dest, replace=True)


def _unlisted_bomb(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
    bomb = member("channel/linux-64/bomb-1.0-0.conda", b"")
    entries = craft.insert_after(entries, craft.MANIFEST, bomb)
    return _bomb(entries, bomb.name, 16 * GB, dest, replace=True)


def _metadata_bomb(name: str) -> Builder:
    def build(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
        return _bomb(entries, name, 4 * GB, dest, replace=True)

    return build


def _many_repodata_bomb(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
    """Five `channel/<x>/repodata.json` of 200 MB each: each under the per-file cap."""
    parts = [craft.zstd(craft.tar_bytes(entries[:1], end=False))]
    for i in range(5):
        info = member(f"channel/bomb{i}/repodata.json", size=200 * MB).info
        parts += [craft.zstd(craft.header(info)), craft.rle_zeros(200 * MB)]
    parts.append(craft.zstd(craft.tar_bytes(entries[1:])))
    dest.write_bytes(b"".join(parts))
    return dest


def _trailing_zeros_bomb(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
    """A complete, valid archive followed by 2 GiB of zeros (64 KB of zstd) in another frame."""
    dest.write_bytes(craft.zstd(craft.tar_bytes(entries)) + craft.rle_zeros(2 * GB))
    return dest


# --- lying manifests ---------------------------------------------------------------------------


def _manifest_edit(edit: Callable[[dict[str, object]], None]) -> Builder:
    def make(entries: list[Entry], ws: Workspace) -> list[Entry]:
        craft.edit_json(entries, craft.MANIFEST, edit)
        return entries

    return _built(make)


def _edit_artifact(entries: list[Entry], which: str, **changes: object) -> list[Entry]:
    def edit(doc: dict[str, object]) -> None:
        for artifact in doc["artifacts"]:  # type: ignore[attr-defined]
            if artifact["path"] == which:
                artifact.update(changes)

    craft.edit_json(entries, craft.MANIFEST, edit)
    return entries


def _artifact_edit(which: str, **changes: object) -> Builder:
    return _built(lambda entries, ws: _edit_artifact(entries, which, **changes))


def _size_lie(entries: list[Entry], ws: Workspace) -> list[Entry]:
    # The member's header tells the truth; the manifest claims one byte less.
    size = craft.manifest_artifact(entries, HELLO)["size"]
    assert isinstance(size, int)
    return _edit_artifact(entries, HELLO, size=size - 1)


def _tampered_content(entries: list[Entry], ws: Workspace) -> list[Entry]:
    target = craft.find(entries, HELLO)
    data = bytearray(target.data)
    data[len(data) // 2] ^= 0x01  # same size, one bit off: only the hash can tell
    target.data = bytes(data)
    return entries


def _repodata_lie(entries: list[Entry], ws: Workspace) -> list[Entry]:
    def edit(doc: dict[str, object]) -> None:
        records = doc["packages.conda"]
        assert isinstance(records, dict)
        records[HELLO.rsplit("/", 1)[-1]]["sha256"] = "0" * 64

    craft.edit_json(entries, "channel/linux-64/repodata.json", edit)
    return entries


def _missing_artifact(entries: list[Entry], ws: Workspace) -> list[Entry]:
    return [e for e in entries if e.name != HELLO]


def _unlisted_artifact(entries: list[Entry], ws: Workspace) -> list[Entry]:
    original = craft.find(entries, HELLO)
    extra = member("channel/linux-64/extra-1.0-0.conda", original.data)
    return craft.insert_after(entries, HELLO, extra)


def _tampered_sbom(entries: list[Entry], ws: Workspace) -> list[Entry]:
    target = craft.find(entries, "sbom.cdx.json")
    data = bytearray(target.data)
    data[len(data) // 2] ^= 0x01  # same size: only the manifest's sha256 can tell
    target.data = bytes(data)
    return entries


def _unlisted_sbom(entries: list[Entry], ws: Workspace) -> list[Entry]:
    def edit(doc: dict[str, object]) -> None:
        del doc["sbom"]

    craft.edit_json(entries, craft.MANIFEST, edit)
    return entries


def _manifest_not_first(entries: list[Entry], ws: Workspace) -> list[Entry]:
    manifest = craft.find(entries, craft.MANIFEST)
    rest = [e for e in entries if e is not manifest]
    return craft.insert_after(rest, "pixi-pack.json", manifest)


def _no_manifest_no_hash(entries: list[Entry], ws: Workspace) -> list[Entry]:
    """A pixi-pack style archive (no envpack.json) whose repodata carries no sha256."""

    def edit(doc: dict[str, object]) -> None:
        for key in ("packages", "packages.conda"):
            for record in doc[key].values():  # type: ignore[attr-defined]
                record.pop("sha256", None)

    entries = [e for e in entries if e.name != craft.MANIFEST]
    craft.edit_json(entries, "channel/linux-64/repodata.json", edit)
    craft.edit_json(entries, "channel/noarch/repodata.json", edit)
    craft.find(entries, HELLO).data = craft.find(entries, HELLO).data[:-1] + b"\1"
    return entries


# --- packages whose file list escapes the prefix -----------------------------------------------


def _package(path: str, *edits: Callable[[list[Entry]], list[Entry]]) -> Builder:
    """Rewrite one real package (paths.json and its tarball) and make every hash agree."""

    def make(entries: list[Entry], ws: Workspace) -> list[Entry]:
        data = craft.find(entries, path).data
        craft.replace_artifact(
            entries, path, craft.rewrite_package(path, data, craft.chain(*edits))
        )
        return entries

    return _built(make)


def _package_for(
    path: str, make_edits: Callable[[Workspace], list[Callable[[list[Entry]], list[Entry]]]]
) -> Builder:
    def build(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
        return _package(path, *make_edits(ws))(entries, ws, dest)

    return build


def _climb_to(ws: Workspace, name: str) -> str:
    # From anywhere under the staging dir, enough `..` reach `/`; then the absolute path.
    return "../" * 30 + str(ws.parent / name).lstrip("/")


def _pkg_file(path: Callable[[Workspace], str], tar_name: str | None = None) -> Builder:
    return _package_for(
        LIB, lambda ws: [craft.add_package_file(path(ws), b"pwned\n", tar_name=tar_name)]
    )


def _pkg_link(path: str, target: Callable[[Workspace], str], pkg: str = LIB) -> Builder:
    return _package_for(
        pkg,
        lambda ws: [craft.add_package_file(path, target(ws).encode(), path_type="softlink")],
    )


def _pkg_link_then_file(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
    """One package ships `share/evil -> victim/`, another writes `share/evil/escape.txt`."""
    link = craft.add_package_file("share/evil", str(ws.victim).encode(), path_type="softlink")
    through = craft.add_package_file("share/evil/escape.txt", b"pwned\n")
    for path, edit in ((LIB, link), (HELLO, through)):
        data = craft.find(entries, path).data
        craft.replace_artifact(entries, path, craft.rewrite_package(path, data, edit))
    return craft.write_archive(dest, entries)


# --- wheels ------------------------------------------------------------------------------------


def _wheel(
    files: Callable[[Workspace], dict[str, bytes]], record_extra: tuple[str, ...] = ()
) -> Builder:
    def make(entries: list[Entry], ws: Workspace) -> list[Entry]:
        name, data = craft.wheel("evil_wheel", files(ws), record_extra=record_extra)
        craft.add_artifact(entries, f"pypi/{name}", data, kind="wheel", name="evil-wheel")
        return entries

    return _built(make)


def _wheel_through_conda_link(entries: list[Entry], ws: Workspace, dest: Path) -> Path:
    """A conda package links site-packages/evil_wheel to victim/; the wheel writes there."""
    link = craft.add_package_file(
        "lib/python3.11/site-packages/evil_wheel", str(ws.victim).encode(), path_type="softlink"
    )
    data = craft.find(entries, LIB).data
    craft.replace_artifact(entries, LIB, craft.rewrite_package(LIB, data, link))
    name, whl = craft.wheel("evil_wheel", {"evil_wheel/__init__.py": b"pwned = True\n"})
    craft.add_artifact(entries, f"pypi/{name}", whl, kind="wheel", name="evil-wheel")
    return craft.write_archive(dest, entries)


CASES: dict[str, Case] = {
    # paths
    "absolute-path": Case(_absolute, ("absolute path",)),
    "absolute-path-pax": Case(_absolute_long, ("absolute path",)),
    "dotdot": Case(_early(member("../../escape-dotdot.txt", b"pwned\n")), ("'..'",)),
    "dotdot-inside": Case(
        _early(member("channel/linux-64/../../../../escape-dotdot.txt", b"pwned\n")), ("'..'",)
    ),
    # links
    "symlink-abs-then-write": Case(_symlink_then_write(lambda ws: str(ws.victim)), ("links",)),
    "symlink-rel-then-write": Case(_symlink_then_write(lambda ws: "../../../victim"), ("links",)),
    "hardlink-etc-passwd": Case(_hardlink(lambda ws: "/etc/passwd"), ("links",)),
    "hardlink-victim": Case(_hardlink(lambda ws: str(ws.victim / "precious.txt")), ("links",)),
    "hardlink-rel": Case(_hardlink(lambda ws: "../../victim/precious.txt"), ("links",)),
    # special files and modes
    "char-device": Case(_special(tarfile.CHRTYPE), ("devices",)),
    "block-device": Case(_special(tarfile.BLKTYPE), ("devices",)),
    "fifo": Case(_special(tarfile.FIFOTYPE), ("FIFO",)),
    "setuid": Case(_mode(0o4755), ("setuid",)),
    "setgid": Case(_mode(0o2755), ("setgid",)),
    # duplicates
    "duplicate-artifact": Case(_built(_duplicate_artifact), ("twice",)),
    "duplicate-normalised": Case(_built(_duplicate_normalised), ("twice",)),
    "duplicate-manifest": Case(_built(_duplicate_manifest), ("twice",)),
    # bombs
    "bomb-header-size": Case(_header_size_bomb, ("manifest says",)),
    "bomb-unlisted-member": Case(_unlisted_bomb, ("not in the manifest",)),
    "bomb-manifest": Case(_metadata_bomb(craft.MANIFEST), ("implausibly large",)),
    "bomb-repodata": Case(_metadata_bomb("channel/linux-64/repodata.json"), ("large",)),
    "bomb-many-repodata": Case(
        _many_repodata_bomb,
        slow=True,
    ),
    "bomb-trailing-zeros": Case(
        _trailing_zeros_bomb,
        slow=True,
    ),
    # lying manifests
    "manifest-size-lie": Case(_built(_size_lie), ("manifest says",)),
    "manifest-hash-lie": Case(_artifact_edit(HELLO, sha256="ab" * 32), ("does not match",)),
    "tampered-package": Case(_built(_tampered_content), ("does not match",)),
    "repodata-hash-lie": Case(_built(_repodata_lie), ("repodata record",)),
    "manifest-lists-missing": Case(_built(_missing_artifact), ("missing",)),
    "manifest-omits-present": Case(_built(_unlisted_artifact), ("not in the manifest",)),
    "manifest-not-first": Case(_built(_manifest_not_first), ("first member",)),
    "manifest-future-format": Case(
        _manifest_edit(lambda d: d.update(format_version=3)), ("format version",)
    ),
    "sbom-tampered": Case(_built(_tampered_sbom), ("sbom.cdx.json", "does not match")),
    "sbom-unlisted": Case(_built(_unlisted_sbom), ("unexpected archive member",)),
    "manifest-escaping-path": Case(
        _artifact_edit(HELLO, path="channel/../../escape.conda"), ("not allowed",)
    ),
    "manifest-virtual-lie": Case(
        _manifest_edit(lambda d: d.update(virtual_packages=["__glibc >=99.0"])), ("glibc",)
    ),
    "pixi-pack-unhashed-tampered": Case(_built(_no_manifest_no_hash), ("sha256",)),
    # packages whose paths.json escapes the prefix
    "pkg-dotdot": Case(_pkg_file(lambda ws: "../../../escape-pkg.txt"), ("libhello",)),
    "pkg-dotdot-untarred": Case(
        _pkg_file(lambda ws: "../../../escape-pkg.txt", tar_name="share/escape.txt"),
        ("libhello",),
    ),
    "pkg-dotdot-to-victim": Case(
        _pkg_file(lambda ws: _climb_to(ws, "victim/precious.txt"), tar_name="share/x.txt"),
        ("libhello",),
    ),
    "pkg-absolute": Case(
        _pkg_file(lambda ws: str(ws.parent / "escape-abs.txt"), tar_name="share/x.txt"),
        ("libhello",),
    ),
    "pkg-symlink-out": Case(
        _pkg_link("share/evil", lambda ws: str(ws.victim)),
        ("libhello",),
    ),
    "pkg-symlink-then-file": Case(
        _package_for(
            LIB,
            lambda ws: [
                craft.add_package_file("share/evil", str(ws.victim).encode(), path_type="softlink"),
                craft.add_package_file("share/evil/escape.txt", b"pwned\n"),
            ],
        ),
        ("libhello",),
    ),
    "pkg-symlink-across-packages": Case(
        _pkg_link_then_file,
    ),
    "pkg-symlink-conda-meta-history": Case(
        _pkg_link("conda-meta/history", lambda ws: str(ws.victim / "precious.txt")),
    ),
    "pkg-symlink-conda-meta-record": Case(
        _pkg_link(
            "conda-meta/hello-c-1.0.0-hccbdfe7_0.json", lambda ws: str(ws.victim / "rec.json")
        ),
    ),
    # wheels
    "wheel-member-dotdot": Case(
        _wheel(lambda ws: {"../../escape-whl.py": b"pwned\n"}), ("unsafe path",)
    ),
    "wheel-member-absolute": Case(
        _wheel(lambda ws: {str(ws.parent / "escape-whl.py").lstrip("/"): b"x", "/e.py": b"x"}),
        ("unsafe path",),
    ),
    "wheel-record-dotdot": Case(
        _wheel(lambda ws: {"evil_wheel/__init__.py": b""}, ("../../../escape-record.py",)),
        ("RECORD",),
    ),
    "wheel-data-dotdot": Case(
        _wheel(lambda ws: {"evil_wheel-1.0.data/data/../../../../escape.txt": b"x"}),
        ("unsafe path",),
    ),
    "wheel-into-conda-meta": Case(
        _wheel(lambda ws: {"evil_wheel-1.0.data/data/conda-meta/evil.json": b"{}"}),
        ("conda-meta",),
    ),
    "wheel-through-conda-symlink": Case(_wheel_through_conda_link, ("outside",)),
}


def _params() -> list[ParameterSet]:
    out = []
    for name, case in CASES.items():
        marks: list[pytest.MarkDecorator] = []
        if case.bug:
            marks.append(pytest.mark.xfail(strict=True, reason=case.bug))
        if case.slow:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.mark.parametrize("name", _params())
def test_malicious_archive_is_refused(
    name: str, packed: Packed, workspace: Workspace, tmp_path: Path
) -> None:
    case = CASES[name]
    # Wheels need the env's python; every other case links three small packages (fast).
    small = not name.startswith("wheel-")
    archive = case.build(base(packed, small=small), workspace, tmp_path / f"{name}.tar")
    line, result = workspace.unpack_refused(archive, *case.needles, limits=BOMB_LIMITS)
    assert result.maxrss_mb < RSS_LIMIT_MB, f"{result.maxrss_mb:.0f} MB RSS: {line}"
    assert (workspace.victim / "precious.txt").read_text() == "do not touch\n"


def test_every_case_starts_from_an_archive_that_unpacks(
    packed: Packed, workspace: Workspace, tmp_path: Path
) -> None:
    """The control: the untouched entries, rewritten by craft, unpack fine."""
    archive = craft.write_archive(tmp_path / "control.tar", base(packed))
    result = run("envunpack", archive, "-o", workspace.out, "-q")
    assert result.returncode == 0, result.err
    assert (workspace.out / "env" / "conda-meta" / "history").is_file()


def test_a_rewritten_package_still_installs(
    packed: Packed, workspace: Workspace, tmp_path: Path
) -> None:
    """The control for the package cases: an innocent added file installs, hashes agree."""
    entries = base(packed)
    data = craft.find(entries, LIB).data
    edit = craft.add_package_file("share/libhello/extra.txt", b"fine\n")
    craft.replace_artifact(entries, LIB, craft.rewrite_package(LIB, data, edit))
    data = craft.find(entries, HELLO).data
    craft.replace_artifact(
        entries,
        HELLO,
        craft.rewrite_package(HELLO, data, craft.add_package_file("share/h.txt", b"ok\n")),
    )
    name, whl = craft.wheel("good_wheel", {"good_wheel/__init__.py": b"ok = 1\n"})
    craft.add_artifact(entries, f"pypi/{name}", whl, kind="wheel", name="good-wheel")
    archive = craft.write_archive(tmp_path / "control.tar", entries)
    result = run("envunpack", archive, "-o", workspace.out, "-q")
    assert result.returncode == 0, result.err
    env = workspace.out / "env"
    assert (env / "share" / "libhello" / "extra.txt").read_text() == "fine\n"
    assert (env / "share" / "h.txt").read_text() == "ok\n"
    assert (env / "lib" / "python3.11" / "site-packages" / "good_wheel" / "__init__.py").is_file()

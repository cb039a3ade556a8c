"""Reading an archive on the target: its head first, then every member verified as it streams.

The head (envpack.json, or pixi-pack.json for archives pixi-pack made) is read and checked
against this machine before the caller creates anything, so a wrong archive leaves no trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from envpack.core.archive import Member
from envpack.core.errors import ArchiveError
from envpack.core.folder import members_of
from envpack.core.hashing import hash_stream
from envpack.core.layout import (
    CHUNK,
    ENVIRONMENT_YML,
    MANIFEST_NAME,
    PIXI_PACK_NAME,
    PYPI_DIR,
    SBOM_NAME,
    is_artifact_path,
    is_repodata_path,
)
from envpack.core.manifest import manifest_from_json, pixi_pack_platform
from envpack.core.models import Artifact, Manifest
from envpack.core.progress import Bar, Reporter
from envpack.target.flavour import Envpack, Flavour, PixiPack
from envpack.target.hostcheck import (
    check_platform,
    check_virtual_packages,
    host_platform,
    host_virtual_packages,
)
from envpack.target.sbomread import verify as verify_sbom

if TYPE_CHECKING:
    from envpack.target.extract import Extractor

METADATA_LIMIT = 64 << 20  # repodata.json of a huge env is a few MB; more is an attack


@dataclass
class Received:
    """What the archive delivered, verified as it streamed."""

    manifest: Manifest | None = None
    platform: str | None = None
    flavour: Flavour = field(default_factory=PixiPack)
    repodata: dict[str, bytes] = field(default_factory=dict)
    # member → (its extracted package directory, its stored file, or None; sha256)
    packages: dict[str, tuple[Path | None, str]] = field(default_factory=dict)
    wheels: dict[str, Path | None] = field(default_factory=dict)
    sbom: bytes | None = None


class Reader:
    """One pass over an archive: `head()` before anything is written, then `rest()`."""

    def __init__(self, source: BinaryIO | Path) -> None:
        # A stream (tar, plain or zstd) or a pack written as a folder (--directory-only).
        self._members = members_of(source)
        self._pending: Member | None = None
        self.got = Received()

    def head(self, *, check_host: bool = True) -> Received:
        """Read the metadata that leads the archive and check it against this host.

        Reads up to the first artifact: metadata (and, as pixi-pack's order varies,
        environment.yml and repodata) may come in any order before it, artifacts never.
        """
        got = self.got
        for index, member in enumerate(self._members):
            if index == 0 and member.name == MANIFEST_NAME:
                got.manifest = manifest_from_json(_read_small(member))
                got.platform = got.manifest.platform
                got.flavour = Envpack(got.manifest)
            elif member.name == MANIFEST_NAME:
                raise ArchiveError(f"{MANIFEST_NAME} must be the first member of the archive")
            elif member.name == PIXI_PACK_NAME:
                platform = pixi_pack_platform(_read_small(member))
                if got.manifest is not None and platform != got.manifest.platform:
                    raise ArchiveError("pixi-pack.json and envpack.json disagree on the platform")
                got.platform = platform
            elif got.flavour.metadata_in_head and member.name == ENVIRONMENT_YML:
                _read_small(member)
            elif got.flavour.metadata_in_head and is_repodata_path(member.name):
                _accept_repodata(got, member)
            else:
                self._pending = member
                break
        if got.platform is None:
            raise ArchiveError(
                "not an envpack or pixi-pack archive (no envpack.json or pixi-pack.json first)"
            )
        if check_host:
            virtual = got.manifest.virtual_packages if got.manifest else ()
            check_platform(got.platform, host_platform())
            check_virtual_packages(virtual, host_virtual_packages())
        return got

    def rest(
        self, into: Path | None, reporter: Reporter, extractor: Extractor | None = None
    ) -> Received:
        """Stream the remaining members; wheels go under `into`, packages to `extractor`
        (which extracts them as they arrive); without those they are only hashed."""
        got = self.got
        flavour = got.flavour
        bar: Bar = reporter.bar("verify", flavour.total, "B")
        try:
            for member in self._remaining():
                if member.name == ENVIRONMENT_YML:
                    _read_small(member)
                elif is_repodata_path(member.name):
                    _accept_repodata(got, member)
                elif member.name == SBOM_NAME and flavour.sbom is not None:
                    # Only where the manifest lists it; anywhere else it is unexpected.
                    got.sbom = verify_sbom(member, flavour.sbom)
                elif is_artifact_path(member.name):
                    expected = flavour.expected(member.name, member.size)
                    if member.name.startswith(PYPI_DIR + "/"):
                        dest = into / member.name if into is not None else None
                        _check(member.name, _store(member, dest, bar), expected)
                        got.wheels[member.name] = dest
                    elif extractor is not None:
                        update = lambda c: bar.update(len(c))  # noqa: E731
                        digest = extractor.feed(member.name, member.size, member.stream, update)
                        _check(member.name, digest, expected)
                        got.packages[member.name] = (extractor.dirs[member.name], digest)
                    else:
                        dest = into / member.name if into is not None else None
                        digest = _check(member.name, _store(member, dest, bar), expected)
                        got.packages[member.name] = (dest, digest)
                else:
                    reporter.warn(flavour.unknown(member.name))
                    _drain(member)
        finally:
            bar.close()
        flavour.check_complete({*got.packages, *got.wheels}, got.sbom is not None)
        return got

    def _remaining(self) -> Iterator[Member]:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            yield pending
        yield from self._members


def read_manifest(source: BinaryIO | Path) -> Manifest | dict[str, object]:
    """The manifest of an envpack archive, or a summary of a pixi-pack one; writes nothing."""
    reader = Reader(source)
    got = reader.head(check_host=False)
    if got.manifest is not None:
        return got.manifest
    artifacts: list[dict[str, object]] = []
    for member in reader._remaining():
        if is_artifact_path(member.name):
            artifacts.append({"path": member.name, "size": member.size})
        _drain(member)
    return {"format": "pixi-pack", "platform": got.platform, "artifacts": artifacts}


def _accept_repodata(got: Received, member: Member) -> None:
    subdir = member.name.split("/")[1]
    # With a manifest, only the two subdirs an env can use; all repodata together is
    # capped either way: it is held in memory.
    if not got.flavour.repodata_allowed(subdir):
        raise ArchiveError(f"unexpected archive member {member.name!r}")
    held = sum(len(v) for v in got.repodata.values())
    if held + member.size > METADATA_LIMIT:
        raise ArchiveError("the archive's repodata.json files are implausibly large")
    got.repodata[member.name] = _read_small(member)


def _store(member: Member, dest: Path | None, bar: Bar) -> str:
    """Copy one artifact to `dest` (or nowhere), hashing as it streams."""
    if dest is None:
        digest = hash_stream(member.stream, each=lambda c: bar.update(len(c))).sha256
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("xb") as out:

            def store(chunk: bytes) -> None:
                out.write(chunk)
                bar.update(len(chunk))

            digest = hash_stream(member.stream, each=store).sha256
    return digest


def _check(name: str, digest: str, expected: Artifact | None) -> str:
    """The member must be what the manifest says (a pixi-pack archive promises nothing)."""
    if expected is not None and digest != expected.sha256:
        raise ArchiveError(
            f"{name}: sha256 {digest} does not match the manifest's {expected.sha256}; "
            "the archive is corrupt or was tampered with"
        )
    return digest


def _read_small(member: Member) -> bytes:
    if member.size > METADATA_LIMIT:
        raise ArchiveError(f"{member.name} is implausibly large ({member.size} bytes)")
    return member.stream.read()


def _drain(member: Member) -> None:
    while member.stream.read(CHUNK):
        pass

"""What to expect of an archive, by who made it: envpack (a manifest) or pixi-pack (none).

An envpack archive says up front what it holds: every artifact with its size and sha256,
and its SBOM; anything else in it is an error. A pixi-pack archive says nothing, so its
repodata's sha256 entries are the only guard, and members we do not know are skipped with
a warning, as pixi-unpack skips them. The reader asks its flavour instead of branching.
"""

from __future__ import annotations

from dataclasses import dataclass

from envpack.core.errors import ArchiveError
from envpack.core.layout import SBOM_NAME
from envpack.core.models import Artifact, Listed, Manifest


@dataclass(frozen=True)
class Envpack:
    manifest: Manifest
    name = "envpack"
    # Its head is the manifest and pixi-pack.json; everything else comes after.
    metadata_in_head = False
    # The manifest's sha256 guards every file; a record without one is still verified.
    records_must_hash = False

    @property
    def total(self) -> int | None:
        return sum(a.size or 0 for a in self.manifest.artifacts)

    @property
    def sbom(self) -> Listed | None:
        return self.manifest.sbom

    def expected(self, path: str, size: int) -> Artifact:
        artifact = self.manifest.artifact_for(path)
        if artifact is None:
            raise ArchiveError(f"archive member {path!r} is not in the manifest")
        # Checked from the header, before reading: a lying member cannot inflate past this.
        if size != artifact.size:
            raise ArchiveError(
                f"{path}: {size} bytes in the archive, manifest says {artifact.size}"
            )
        return artifact

    def repodata_allowed(self, subdir: str) -> bool:
        return subdir in ("noarch", self.manifest.platform)

    def unknown(self, name: str) -> str:
        """The warning under which a member we do not know is skipped; or refuse it."""
        raise ArchiveError(f"unexpected archive member {name!r}")

    def check_complete(self, received: set[str], sbom_seen: bool) -> None:
        missing = [a.path for a in self.manifest.artifacts if a.path not in received]
        if missing:
            raise ArchiveError(f"archive is missing {len(missing)} artifacts, e.g. {missing[0]}")
        if self.manifest.sbom is not None and not sbom_seen:
            raise ArchiveError(f"archive is missing {SBOM_NAME}, which its manifest lists")


@dataclass(frozen=True)
class PixiPack:
    name = "pixi-pack"
    # pixi-pack's member order varies: environment.yml and repodata may lead.
    metadata_in_head = True
    # No manifest: a package whose record has no sha256 could not be verified at all.
    records_must_hash = True
    total = None
    sbom = None
    manifest = None

    def expected(self, path: str, size: int) -> Artifact | None:
        return None  # nothing is promised; the repodata's sha256 is checked at linking

    def repodata_allowed(self, subdir: str) -> bool:
        return True  # any subdir; all repodata together is capped, as it is held in memory

    def unknown(self, name: str) -> str:
        return f"ignoring unknown archive member {name!r}"

    def check_complete(self, received: set[str], sbom_seen: bool) -> None:
        return None


Flavour = Envpack | PixiPack

"""Plain data shared by pack and unpack. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from envpack.core.layout import CHANNEL_DIR, PYPI_DIR

ArtifactKind = Literal["conda", "wheel"]


@dataclass(frozen=True)
class Artifact:
    """One file shipped in the archive: a conda package or a wheel."""

    kind: ArtifactKind
    name: str
    version: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    build: str = ""
    subdir: str = ""

    @property
    def path(self) -> str:
        """Where the artifact lives inside the archive."""
        if self.kind == "conda":
            return f"{CHANNEL_DIR}/{self.subdir}/{self.filename}"
        return f"{PYPI_DIR}/{self.filename}"

    @property
    def label(self) -> str:
        """Human name for messages: `name version build`."""
        return " ".join(p for p in (self.name, self.version, self.build) if p)


@dataclass(frozen=True)
class Download:
    """An artifact to fetch and the URL it comes from (pack side only; never archived)."""

    artifact: Artifact
    url: str
    # The repodata record as JSON fields, kept so the archive's repodata.json carries the
    # lock's (possibly patched) metadata rather than what the package file claims.
    record: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    # Added with --inject rather than taken from the lock (the SBOM says so).
    injected: bool = False


@dataclass(frozen=True)
class Plan:
    """What one environment on one platform needs, as read from the lock."""

    environment: str
    platform: str
    lock_sha256: str
    virtual_packages: tuple[str, ...]
    downloads: tuple[Download, ...]

    @property
    def total_size(self) -> int:
        return sum(d.artifact.size or 0 for d in self.downloads)


@dataclass(frozen=True)
class Listed:
    """A non-artifact member the manifest vouches for (the SBOM): where, how big, its sha256."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """The archive's `envpack.json`."""

    format_version: int
    envpack_version: str
    platform: str
    environment: str
    lock_sha256: str
    virtual_packages: tuple[str, ...]
    artifacts: tuple[Artifact, ...]
    sbom: Listed | None = None

    def artifact_for(self, path: str) -> Artifact | None:
        return self._by_path.get(path)

    @cached_property
    def _by_path(self) -> dict[str, Artifact]:
        # One dict, not a scan per member: unpacking asks once for every artifact.
        return {a.path: a for a in self.artifacts}

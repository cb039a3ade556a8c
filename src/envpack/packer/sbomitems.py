"""What an SBOM is made of: the shipped items and the environment they are of.

Apart from sbom.py so that the packer can name them (and key the SBOM memo on them,
sbommemo.py) without importing cyclonedx, which costs ~0.12 s of a pack's start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from envpack.core.models import Artifact, Plan


@dataclass(frozen=True)
class Item:
    """One shipped artifact and what is known about it."""

    artifact: Artifact
    # Repodata fields of a conda package (depends, license); empty for wheels.
    record: Mapping[str, object] = field(default_factory=dict)
    # Where the lock says it comes from (None: unknown); file:// URLs are not recorded.
    url: str | None = None
    injected: bool = False


@dataclass(frozen=True)
class Subject:
    """What the SBOM is of: one environment on one platform."""

    environment: str
    platform: str
    lock_sha256: str | None = None
    source: str = "envpack archive"


def plan_items(plan: Plan, artifacts: Sequence[Artifact] | None = None) -> list[Item]:
    """Items of a plan; `artifacts` (e.g. the manifest's, hashed from the downloaded bytes)
    replace the lock's artifacts of the same path, so the SBOM states what was shipped."""
    shipped = {a.path: a for a in artifacts or ()}
    return [
        Item(
            artifact=shipped.get(d.artifact.path, d.artifact),
            record=d.record,
            # The lock's URL, not a mirror's: mirrors are the packing machine's business, and
            # the SBOM must not change with them.
            url=None if d.injected else d.url,
            injected=d.injected,
        )
        for d in plan.downloads
    ]

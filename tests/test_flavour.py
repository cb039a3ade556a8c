"""envpack.target.flavour: what each kind of archive promises, and what the reader then demands."""

from __future__ import annotations

import pytest

from envpack.core.errors import ArchiveError
from envpack.core.models import Artifact, Manifest
from envpack.target.flavour import Envpack, PixiPack

SIX = Artifact("conda", "six", "1", "six-1-0.conda", "ab" * 32, None, 10, "0", "noarch")


def _envpack() -> Envpack:
    return Envpack(Manifest(2, "0", "linux-64", "default", "cd" * 32, (), (SIX,)))


def test_envpack_expects_exactly_its_manifest() -> None:
    flavour = _envpack()
    assert flavour.expected(SIX.path, 10) == SIX
    with pytest.raises(ArchiveError, match="not in the manifest"):
        flavour.expected("channel/noarch/other-1-0.conda", 10)
    with pytest.raises(ArchiveError, match="manifest says 10"):
        flavour.expected(SIX.path, 11)
    with pytest.raises(ArchiveError, match="unexpected"):
        flavour.unknown("notes.txt")
    with pytest.raises(ArchiveError, match="missing 1 artifacts"):
        flavour.check_complete(set(), sbom_seen=False)
    flavour.check_complete({SIX.path}, sbom_seen=False)
    assert flavour.repodata_allowed("noarch") and not flavour.repodata_allowed("win-64")
    assert flavour.total == 10 and not flavour.records_must_hash


def test_pixi_pack_promises_nothing_so_records_must_hash() -> None:
    flavour = PixiPack()
    assert flavour.expected(SIX.path, 10) is None
    assert "ignoring" in flavour.unknown("notes.txt")
    flavour.check_complete(set(), sbom_seen=False)
    assert flavour.repodata_allowed("win-64") and flavour.records_must_hash
    assert flavour.total is None and flavour.metadata_in_head

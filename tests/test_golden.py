"""Golden sha256 of the archive writer's bytes, for both compressions.

Same inputs must give the same archive on every machine and every release: a change of
these digests means archives are no longer reproducible across envpack versions (or the
zstd library changed its output) and must be a deliberate, noted decision.
"""

from __future__ import annotations

import hashlib
import io

import pytest

from envpack.archive import ArchiveWriter, Compression

GOLDEN = {
    "zstd": "6778471f715558128fd864dd2317a29c0f1489cc299cd090a0edc794bdf295c8",
    "none": "1ac02900b6e373c14be771b528b1b60665e9a8643b47c709669166b6e1edfaab",
}


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_archive_bytes_match_the_golden_digest(compression: Compression) -> None:
    out = io.BytesIO()
    with ArchiveWriter(out, compression, 3) as writer:
        writer.add_bytes("envpack.json", b'{"format_version": 1}\n')
        writer.add_bytes("channel/noarch/repodata.json", b'{"packages": {}}' * 100)
        writer.add_bytes("channel/noarch/x-1-0.conda", bytes(range(256)) * 4096)
    assert hashlib.sha256(out.getvalue()).hexdigest() == GOLDEN[compression]

"""Pack into, and unpack into, a 2 MB tmpfs: a clear `no space left` error and no debris."""

from __future__ import annotations

from pathlib import Path

from tests.adversarial.conftest import Packed, one_error_line, run, snapshot
from tests.adversarial.test_pack_faults import cache_problems


def test_pack_onto_a_full_disk(packed: Packed, small_tmpfs: Path) -> None:
    before = snapshot(small_tmpfs)
    out = small_tmpfs / "env.tar"
    # A warm cache elsewhere: the archive itself (11 MB) is what does not fit.
    result = run("envpack", packed.project, "-o", out, "--cache", packed.cache)
    one_error_line(result, "no space left")
    assert snapshot(small_tmpfs) == before, sorted(snapshot(small_tmpfs))


def test_pack_with_the_cache_on_a_full_disk(
    packed: Packed, small_tmpfs: Path, tmp_path: Path
) -> None:
    cache = small_tmpfs / "cache"
    result = run("envpack", packed.project, "-o", tmp_path / "env.tar", "--cache", cache)
    one_error_line(result, "space")
    assert not (tmp_path / "env.tar").exists()
    assert not list(tmp_path.glob(".env.tar.*"))
    assert not cache_problems(cache), cache_problems(cache)


def test_unpack_onto_a_full_disk(packed: Packed, small_tmpfs: Path) -> None:
    before = snapshot(small_tmpfs)
    result = run("envunpack", packed.zstd, "-o", small_tmpfs / "app")
    one_error_line(result, "no space left")
    assert snapshot(small_tmpfs) == before, sorted(snapshot(small_tmpfs))

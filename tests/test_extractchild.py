"""envpack.target.extractchild: the file list a child leaves beside its package is the one
read from the package itself, a package without one is refused in the parent's words, and
a missing list is read from the package again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from rattler.package_streaming import extract

from devtools.fixtures.channel import FixtureChannel
from envpack.core.errors import InstallError
from envpack.target.extractchild import ENTRIES, read_entries, write_entries
from envpack.target.pkgcheck import Entry, extracted_entries


def _extracted(fixture_channel: FixtureChannel, tmp_path: Path, prefix: str) -> Path:
    package = next(
        p
        for p in sorted((fixture_channel.root / "linux-64").glob("*.conda"))
        if p.name.startswith(prefix)
    )
    dest = tmp_path / "work" / "pkg"
    extract(package, dest)
    return dest


def test_the_list_left_behind_is_the_packages_own(
    fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    dest = _extracted(fixture_channel, tmp_path, "python-3")
    write_entries(dest, "channel/linux-64/python.conda")
    listing = dest.parent / ENTRIES
    got = read_entries(listing, dest, "channel/linux-64/python.conda")
    want = extracted_entries(dest, "channel/linux-64/python.conda")
    assert got == want
    assert len(got) > 500 and any(e.softlink for e in got)  # python has bin/python -> 3.11


def test_a_package_without_a_list_is_refused_where_the_lists_are_checked(
    fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    dest = _extracted(fixture_channel, tmp_path, "libzlib")
    (dest / "info" / "paths.json").unlink()
    member = "channel/linux-64/libzlib.conda"
    write_entries(dest, member)  # no error here: the extraction itself went fine
    with pytest.raises(InstallError) as direct:
        extracted_entries(dest, member)
    with pytest.raises(InstallError) as left:
        read_entries(dest.parent / ENTRIES, dest, member)
    assert str(left.value) == str(direct.value)


@pytest.mark.parametrize("listing", ["missing", "cut"])
def test_without_a_readable_list_the_package_is_read_again(
    fixture_channel: FixtureChannel, tmp_path: Path, listing: str
) -> None:
    dest = _extracted(fixture_channel, tmp_path, "libzlib")
    member = "channel/linux-64/libzlib.conda"
    write_entries(dest, member)
    path = dest.parent / ENTRIES
    if listing == "missing":
        path.unlink()
    else:
        path.write_text(path.read_text()[:20])
    moved = tmp_path / "cache" / "libzlib"
    shutil.move(dest, moved)  # where place() puts it
    assert read_entries(path, moved, member) == extracted_entries(moved, member)


def test_the_list_is_plain_json(fixture_channel: FixtureChannel, tmp_path: Path) -> None:
    dest = _extracted(fixture_channel, tmp_path, "libzlib")
    write_entries(dest, "x.conda")
    listed = json.loads((dest.parent / ENTRIES).read_text())
    assert [Entry(p, s) for p, s in listed["entries"]] == extracted_entries(dest, "x.conda")

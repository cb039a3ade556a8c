"""devtools.fixtures.debs: the .debs the fixture recipes repackage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devtools.fixtures import debs
from devtools.fixtures.cachebuild import FixtureBuildError, default_cache_dir
from devtools.fixtures.channel import FixtureChannel

DEBDIR = default_cache_dir() / "downloads" / "debs" / "amd64"


@pytest.fixture
def busybox_deb(fixture_channel: FixtureChannel) -> Path:
    # Built with the channel: its .deb is in the download cache.
    found = debs.find_deb(DEBDIR, "busybox-static", "amd64")
    assert found is not None
    return found


def test_deb_version_is_the_upstream_one(busybox_deb: Path) -> None:
    assert debs.deb_version(busybox_deb) == "1.35.0"


def test_find_deb_matches_name_and_arch_exactly(busybox_deb: Path, tmp_path: Path) -> None:
    for name in ("busybox-static_1.35.0-4_arm64.deb", "busybox_1.35.0-4_amd64.deb"):
        shutil.copy(busybox_deb, tmp_path / name)
    assert debs.find_deb(tmp_path, "busybox-static", "amd64") is None
    shutil.copy(busybox_deb, tmp_path / busybox_deb.name)
    assert debs.find_deb(tmp_path, "busybox-static", "amd64") == tmp_path / busybox_deb.name
    assert debs.find_deb(tmp_path, "busybox", "arm64") is None


def test_a_file_that_is_no_deb_is_one_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "busybox-static_1.0_amd64.deb"
    fake.write_bytes(b"not a deb")
    with pytest.raises(FixtureBuildError, match="dpkg-deb"):
        debs.deb_version(fake)


def test_apt_options_keep_a_private_state_per_arch(tmp_path: Path) -> None:
    options = debs.DebFetcher(tmp_path, print).apt_options("arm64")
    pairs = dict(o.split("=", 1) for o in options[1::2])
    assert pairs["APT::Architecture"] == "arm64"
    assert pairs["Dir::State::status"] == str(tmp_path / "apt-arm64" / "status")
    assert (tmp_path / "apt-arm64" / "lists" / "partial").is_dir()

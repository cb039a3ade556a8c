"""Session-wide fixtures: the locally built conda channel, served over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.fixtures.channel import build as build_fixture_channel
from devtools.httpserver import serve_directory
from tests.clirun import run_cli

REPO_ROOT = Path(__file__).resolve().parent.parent


def real_shared_dir() -> Path | None:
    """`../shared` beside the repository (real packages and locks), or None if absent.

    Users cloning the project do not have it, so tests using it must skip without it.
    """
    shared = REPO_ROOT.parent / "shared"
    return shared if shared.is_dir() else None


@pytest.fixture(scope="session")
def fixture_channel() -> FixtureChannel:
    # Cached under ENVPACK_DEV_CACHE; ./scripts/test builds it before pytest starts.
    return build_fixture_channel()


@pytest.fixture(scope="session")
def channel_url(fixture_channel: FixtureChannel) -> Iterator[str]:
    """Base URL (no trailing slash) of a 127.0.0.1 server over the channel root."""
    with serve_directory(fixture_channel.root) as url:
        yield url


@pytest.fixture
def fixture_project(tmp_path: Path, fixture_channel: FixtureChannel, channel_url: str) -> Path:
    """A project directory whose pixi.lock (format v6) points at the served channel."""
    project = tmp_path / "project"
    lock_for(fixture_channel.lock_v6, channel_url, project)
    return project


@pytest.fixture
def fixture_project_v7(tmp_path: Path, fixture_channel: FixtureChannel, channel_url: str) -> Path:
    """Like fixture_project, with the lock in format v7 as py-rattler writes it."""
    project = tmp_path / "project-v7"
    lock_for(fixture_channel.lock_v7, channel_url, project)
    return project


@pytest.fixture(scope="session")
def archives(tmp_path_factory: pytest.TempPathFactory, fixture_channel: object) -> dict[str, Path]:
    """The fixture env packed once per session: zstd, plain, and for linux-aarch64."""
    assert isinstance(fixture_channel, FixtureChannel)
    base = tmp_path_factory.mktemp("archives")
    out: dict[str, Path] = {}
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_v6, url, base / "project").parent
        for compression in ("zstd", "none"):
            archive = base / f"env-{compression}.tar"
            result = run_cli(
                "envpack",
                project,
                "-o",
                archive,
                "--cache",
                base / "cache",
                "-q",
                "--compression",
                compression,
            )
            assert result.returncode == 0, result.stderr.decode()
            out[compression] = archive
        arm = base / "env-arm.tar"
        result = run_cli(
            "envpack", project, "-o", arm, "--cache", base / "cache", "-q", "-p", "linux-aarch64"
        )
        assert result.returncode == 0, result.stderr.decode()
        out["aarch64"] = arm
        out["project"] = project
    return out

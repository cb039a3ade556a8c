"""devtools.fixtures.locks: the fixture locks, solved from a channel and written as v6 and v7."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import rattler
import yaml  # type: ignore[import-untyped]  # the reader pixi-like tools use; no stubs installed

from devtools.fixtures import locks
from devtools.fixtures.channel import FixtureChannel


@pytest.mark.parametrize(
    "value",
    ["plain", "1.2.3", "yes", "a: b", "x #y", "trailing ", "", "~", "-1e5", 'quote"d', "ünï"],
)
def test_yaml_scalar_reads_back_as_the_same_string(value: str) -> None:
    assert yaml.safe_load(f"k: {locks._yaml_scalar(value)}") == {"k": value}


def test_millis() -> None:
    when = dt.datetime(2026, 12, 1, 10, 0, 0, 250000, tzinfo=dt.UTC)
    assert locks._millis(when) == 1796119200250


def test_solve_and_both_writers_agree(fixture_channel: FixtureChannel, tmp_path: Path) -> None:
    records = {
        platform: locks.solve(fixture_channel.root, platform, ["hello-c"])
        for platform in ("linux-64", "linux-aarch64")
    }
    for platform_records in records.values():
        assert [r.name.normalized for r in platform_records] == ["hello-c", "libhello"]
        assert all(r.url.startswith(locks.PLACEHOLDER_URL + "/") for r in platform_records)
    locks.write_lock_v6(records, tmp_path / "v6.lock")
    locks.write_lock_v7(records, tmp_path / "v7.lock")
    read = {
        name: rattler.LockFile.from_path(tmp_path / name).environment(locks.ENVIRONMENT)
        for name in ("v6.lock", "v7.lock")
    }
    for env in read.values():
        assert env is not None
        got = env.conda_repodata_records()
        assert {p: [r.url for r in rs] for p, rs in got.items()} == {
            p: [r.url for r in rs] for p, rs in records.items()
        }
        assert {p: [r.sha256 for r in rs] for p, rs in got.items()} == {
            p: [r.sha256 for r in rs] for p, rs in records.items()
        }

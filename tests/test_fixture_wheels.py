"""devtools.fixtures.wheels: pinned wheels come through pip's configured index, verified."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from devtools.fixtures import bigenv
from devtools.fixtures.cachebuild import FixtureBuildError
from devtools.fixtures.channel import RECIPES
from devtools.fixtures.wheels import Pin, fetch, load_pins

PINS = load_pins(RECIPES / "pypi" / "wheels.toml")


def test_pins_name_no_host_and_cover_every_pypi_recipe() -> None:
    recipes = {p.parent.name for p in (RECIPES / "pypi").glob("*/recipe.yaml")}
    assert {p.name for p in PINS} == recipes
    for table in (RECIPES / "pypi" / "wheels.toml", bigenv.WHEELS_TOML):
        assert "://" not in table.read_text()
    for recipe in (RECIPES / "pypi").glob("*/recipe.yaml"):
        assert "://" not in recipe.read_text(), recipe


@pytest.mark.network
def test_fetch_downloads_verifies_and_then_reuses(tmp_path: Path) -> None:
    got = fetch(PINS, tmp_path)
    for pin in PINS:
        assert hashlib.sha256(got[pin.file].read_bytes()).hexdigest() == pin.sha256
    before = {path: path.stat().st_mtime_ns for path in got.values()}
    assert fetch(PINS, tmp_path) == got
    assert {path: path.stat().st_mtime_ns for path in got.values()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(got)  # no temp dirs left


@pytest.mark.network
def test_a_wrong_pin_fails_and_keeps_nothing(tmp_path: Path) -> None:
    bad_hash = replace(PINS[0], sha256="0" * 64)
    with pytest.raises(FixtureBuildError, match=r"has not sha256 0{64}"):
        fetch([bad_hash], tmp_path)
    assert list(tmp_path.iterdir()) == []
    bad_file = Pin(PINS[0].name, PINS[0].version, "six-1.17.0-py3-none-any.whl", PINS[0].sha256)
    with pytest.raises(FixtureBuildError, match=r"not six-1\.17\.0-py3-none-any\.whl"):
        fetch([bad_file], tmp_path)
    with pytest.raises(FixtureBuildError, match="pip download of"):
        fetch([replace(PINS[0], version="0.0.0.404")], tmp_path)

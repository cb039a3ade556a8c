"""The benchmark env's builder: its recipes render, its wheel table is coherent, and a cached
build plans as a large env. Building it takes minutes, so only `scripts/bench` builds it."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest
import rattler_build
from packaging.utils import canonicalize_name, parse_wheel_filename

from devtools.fixtures import bigenv
from devtools.fixtures.channel import ENV_SPECS
from envpack.packer.lockfile import plan_lock

FIXTURE_NAMES = {"python", "six", "python-dateutil", "tabulate"}


def _render(paths: Sequence[Path]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # render_only: parse and evaluate every recipe, build nothing, ask no channel.
        rattler_build.build_recipes(list(paths), target_platform=bigenv.PLATFORM, render_only=True)


def test_every_wheel_recipe_renders(tmp_path: Path) -> None:
    paths = bigenv.write_recipes(tmp_path, tmp_path / "wheels")
    assert len(paths) == len(bigenv.wheels())
    _render(paths)


def test_payload_recipe_renders() -> None:
    _render([bigenv.BENCH_RECIPES / "payload" / "recipe.yaml"])


def test_wheel_table_is_coherent() -> None:
    wheels = bigenv.wheels()
    names = [w.name for w in wheels]
    assert len(names) == len(set(names))
    known = set(names) | FIXTURE_NAMES
    for wheel in wheels:
        assert re.fullmatch(r"[0-9a-f]{64}", wheel.sha256), wheel.name
        # Pinned by name, version and file, fetched through pip's index: no host in the tree.
        name, version, _, _ = parse_wheel_filename(wheel.file)
        assert (name, str(version)) == (canonicalize_name(wheel.name), wheel.version), wheel.file
        if wheel.compiled:
            # The fixture python is CPython 3.11 on x86_64 glibc.
            assert "-cp311-cp311-manylinux" in wheel.file, wheel.file
            assert wheel.file.endswith("x86_64.whl"), wheel.file
        for dep in wheel.depends:
            assert dep.split()[0] in known, f"{wheel.name} depends on unknown {dep}"
    compiled = {w.name for w in wheels if w.compiled}
    assert {"numpy", "scipy", "pandas", "pyarrow"} <= compiled
    # Enough packages for "looks like real work": the fixture's ~19 plus these.
    assert len(wheels) + len(ENV_SPECS) >= 55


def test_compiled_recipes_keep_the_wheels_rpaths() -> None:
    numpy = next(w for w in bigenv.wheels() if w.name == "numpy")
    recipe = bigenv.recipe(numpy, Path("/wheels"))
    build = recipe["build"]
    assert isinstance(build, dict)
    assert build["dynamic_linking"] == {"binary_relocation": False}
    assert "noarch" not in build


def test_cached_lock_plans_a_large_env() -> None:
    built = bigenv.cached()
    if built is None:
        pytest.skip("benchmark env not built (scripts/bench builds it)")
    plan, _ = plan_lock(built.lock, "default", bigenv.PLATFORM)
    assert len(plan.downloads) >= 60
    assert {"numpy", "scipy", "pandas", "pyarrow", "python"} <= {
        d.artifact.name for d in plan.downloads
    }

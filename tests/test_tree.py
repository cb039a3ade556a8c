"""The house rules that hold for the whole tree (docs/architecture.md): one job per module, so
none grows past 300 lines, and each has a test file of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    p for p in (ROOT / "src" / "envpack").rglob("*.py") if p.name not in ("__init__.py",)
)
LIMIT = 300


def test_the_tree_has_modules() -> None:
    assert len(MODULES) > 50


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_over_the_limit(module: Path) -> None:
    lines = len(module.read_text(encoding="utf-8").splitlines())
    assert lines <= LIMIT, f"{module.name} has {lines} lines: split it by job"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_each_module_has_a_test_file(module: Path) -> None:
    assert (ROOT / "tests" / f"test_{module.stem}.py").is_file()

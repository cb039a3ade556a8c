"""The `envpack` command line, run as a user runs it: the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rattler

import envpack

ENVPACK = Path(sys.executable).parent / "envpack"
LOCKS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "real-locks"
NEEDS_SHARED = pytest.mark.skipif(
    not LOCKS_DIR.is_dir(), reason=f"{LOCKS_DIR} is absent (it is not part of the repository)"
)
SIMPLE = LOCKS_DIR / "Quantco_pixi-pack_examples_simple-python_pixi.lock"
WEBSERVER = LOCKS_DIR / "Quantco_pixi-pack_examples_webserver_pixi.lock"


def _run(
    *args: str | Path, cwd: Path | None = None, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if home is not None:
        # No pixi config, auth file or cache of the developer's leaks into the test.
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
        env.update(XDG_CACHE_HOME=str(home / ".cache"))
        env.pop("RATTLER_AUTH_FILE", None)
    return subprocess.run(
        [str(ENVPACK), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def _assert_one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _expected(lock: Path, env: str, platform: str) -> tuple[int, int]:
    """Count and total size from rattler's records, not from envpack."""
    environment = rattler.LockFile.from_path(lock).environment(env)
    assert environment is not None
    (plat,) = [p for p in environment.platforms() if p.name == platform]
    conda = [
        p.repo_data_record()
        for p in environment.packages(plat) or []
        if isinstance(p, rattler.CondaLockedBinaryPackage)
    ]
    wheels = [
        p
        for p in environment.packages(plat) or []
        if isinstance(p, rattler.PypiLockedPackage) and p.location.split("#")[0].endswith(".whl")
    ]
    return len(conda) + len(wheels), sum(r.size or 0 for r in conda)


# --- informational --------------------------------------------------------------------------


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"envpack {envpack.__version__}"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag: str) -> None:
    result = _run(flag)
    assert result.returncode == 0, result.stderr
    for option in ("--environment", "--platform", "--output", "--compression", "--dry-run"):
        assert option in result.stdout
    assert result.stderr == ""


# --- dry runs on real locks -------------------------------------------------------------------


@NEEDS_SHARED
@pytest.mark.parametrize(
    ("lock", "env", "platform"),
    [
        (SIMPLE, "default", "linux-64"),
        (SIMPLE, "default", "linux-aarch64"),
        (WEBSERVER, "prod", "osx-arm64"),
    ],
)
def test_dry_run_json(tmp_path: Path, lock: Path, env: str, platform: str) -> None:
    result = _run(lock, "--dry-run", "--json", "-e", env, "-p", platform, home=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    count, total = _expected(lock, env, platform)
    assert doc["count"] == count == len(doc["artifacts"])
    assert doc["total_size"] == total == sum(a["size"] or 0 for a in doc["artifacts"])
    assert (doc["environment"], doc["platform"]) == (env, platform)
    assert not list(tmp_path.rglob("*.conda")), "a dry run downloads nothing"


@NEEDS_SHARED
def test_dry_run_accepts_a_project_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pixi.lock").write_bytes(SIMPLE.read_bytes())
    result = _run("--dry-run", "--json", "-p", "linux-64", cwd=project, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["count"] == _expected(SIMPLE, "default", "linux-64")[0]


@NEEDS_SHARED
def test_dry_run_human_output(tmp_path: Path) -> None:
    result = _run(SIMPLE, "--dry-run", "-p", "linux-64", home=tmp_path)
    assert result.returncode == 0, result.stderr
    count, _ = _expected(SIMPLE, "default", "linux-64")
    assert result.stdout.splitlines()[-1].startswith(f"{count} artifacts")


# --- user errors: one line, no traceback ------------------------------------------------------


def test_missing_lock(tmp_path: Path) -> None:
    _assert_one_error_line(_run(tmp_path / "nope.lock", "--dry-run", home=tmp_path), "nope.lock")


def test_directory_without_a_lock(tmp_path: Path) -> None:
    _assert_one_error_line(_run(tmp_path, "--dry-run", home=tmp_path), "pixi.lock")


def test_invalid_lock(tmp_path: Path) -> None:
    lock = tmp_path / "pixi.lock"
    lock.write_text("version: 6\nenvironments: [this is\n  not: {valid\n")
    _assert_one_error_line(_run(lock, "--dry-run", home=tmp_path), "pixi.lock")


@NEEDS_SHARED
def test_unknown_environment(tmp_path: Path) -> None:
    line = _assert_one_error_line(
        _run(WEBSERVER, "--dry-run", "-e", "staging", home=tmp_path), "staging"
    )
    assert "default" in line and "prod" in line


@NEEDS_SHARED
def test_unknown_platform(tmp_path: Path) -> None:
    line = _assert_one_error_line(
        _run(SIMPLE, "--dry-run", "-p", "linux-s390x", home=tmp_path), "linux-s390x"
    )
    assert "linux-64" in line and "osx-arm64" in line


@NEEDS_SHARED
def test_sdist_without_the_flag(tmp_path: Path) -> None:
    lock = LOCKS_DIR / "Quantco_pixi-pack_examples_pypi-non-wheel-packages_pixi.lock"
    _assert_one_error_line(_run(lock, "--dry-run", "-p", "linux-64", home=tmp_path), "pysdl2")


@pytest.mark.parametrize("mirror", ["no-equals", "=https://m.example", "https://o.example="])
def test_bad_mirror(tmp_path: Path, mirror: str) -> None:
    _assert_one_error_line(
        _run(tmp_path, "--dry-run", "--mirror", mirror, home=tmp_path), "ORIGINAL=MIRROR"
    )


def test_unknown_option(tmp_path: Path) -> None:
    result = _run("--frobnicate", home=tmp_path)
    _assert_one_error_line(result, "--frobnicate")
    assert result.returncode == 2


@pytest.mark.parametrize(
    "args",
    [["--compression", "lz4"], ["--level", "99"], ["--concurrency", "0"]],
    ids=["compression", "level", "concurrency"],
)
def test_bad_option_values(tmp_path: Path, args: list[str]) -> None:
    _assert_one_error_line(_run(tmp_path, "--dry-run", *args, home=tmp_path))


@pytest.mark.parametrize("manifest", ["pixi.toml", "pyproject.toml", "."])
def test_manifest_means_the_lock_beside_it(
    tmp_path: Path, fixture_project: Path, manifest: str
) -> None:
    if manifest != ".":
        (fixture_project / manifest).write_text("[workspace]\nname = 'fixture'\n")
    by_lock = _run(fixture_project / "pixi.lock", "--dry-run", "--json", home=tmp_path)
    by_manifest = _run(fixture_project / manifest, "--dry-run", "--json", home=tmp_path)
    assert by_lock.returncode == 0, by_lock.stderr
    assert by_manifest.returncode == 0, by_manifest.stderr
    assert json.loads(by_manifest.stdout) == json.loads(by_lock.stdout)


def test_manifest_without_a_lock(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    line = _assert_one_error_line(_run(tmp_path / "pyproject.toml", "--dry-run", home=tmp_path))
    assert line == f"error: no pixi.lock next to {tmp_path / 'pyproject.toml'}; run `pixi lock`"

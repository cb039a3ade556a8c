"""Every real package file in `../shared/real-packages`, packed and unpacked alone.

Each gets its own lock (py-rattler: its record from the file itself, its URL on a local
HTTP server). noarch python packages also get the fixture channel's linux-64 python and its
libraries: a stub python to link against. Each must either install correctly (its
conda-meta record exists and lists files that are all present) or stop with one clear
`error:` line that names the package, never a traceback, a panic or a half-written env.
The outcomes are printed as a table at the end of the session.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import rattler

from devtools.httpserver import serve_directory
from tests.adversarial.conftest import Packed, Run, note, one_error_line, run
from tests.conftest import real_shared_dir

SHARED = real_shared_dir()
PACKAGES_DIR = SHARED / "real-packages" if SHARED else None
FILES = (
    sorted(p.name for p in PACKAGES_DIR.iterdir() if p.name.endswith((".conda", ".tar.bz2")))
    if PACKAGES_DIR and PACKAGES_DIR.is_dir()
    else []
)
PLATFORM = "linux-64"
# The fixture env minus its own leaf packages: python 3.11 and the libraries it links.
_NOT_STUB = {"six", "python-dateutil", "tabulate", "hello-c", "libhello", "fixture-activation"}
OUTCOMES: dict[str, tuple[str, str, str]] = {}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The real packages under <subdir>/ of a served dir, by symlink: nothing is copied."""
    assert PACKAGES_DIR is not None
    root = tmp_path_factory.mktemp("real-channel")
    for name in FILES:
        try:
            record = _record(PACKAGES_DIR / name)
        except Exception:  # rattler cannot read it; the test takes envpack's --inject path
            continue
        (root / record.subdir).mkdir(exist_ok=True)
        (root / record.subdir / name).symlink_to(PACKAGES_DIR / name)
    with serve_directory(root) as url:
        yield root, url


def _record(path: Path) -> rattler.RepoDataRecord:
    return asyncio.run(rattler.RepoDataRecord.from_package_archive(path))


def _stub_python(packed: Packed) -> list[rattler.RepoDataRecord]:
    lock = rattler.LockFile.from_path(packed.project / "pixi.lock")
    env = lock.environment("default")
    assert env is not None
    platform = next(p for p in env.platforms() if p.name == PLATFORM)
    return [
        package.repo_data_record()
        for package in env.packages(platform) or []
        if isinstance(package, rattler.CondaLockedBinaryPackage) and package.name not in _NOT_STUB
    ]


def _lock_for(
    name: str, served: tuple[Path, str], packed: Packed, project: Path
) -> rattler.RepoDataRecord:
    assert PACKAGES_DIR is not None
    record = _record(PACKAGES_DIR / name)
    record.url = f"{served[1]}/{record.subdir}/{name}"
    lock = rattler.LockFile([rattler.LockPlatform(PLATFORM)])
    lock.add_conda_package("default", rattler.LockPlatform(PLATFORM), record)
    if record.noarch.python:
        for stub in _stub_python(packed):
            lock.add_conda_package("default", rattler.LockPlatform(PLATFORM), stub)
    project.mkdir(parents=True)
    lock.to_path(project / "pixi.lock")
    return record


def _installed(prefix: Path, record: rattler.RepoDataRecord) -> str | None:
    """None if the package's conda-meta record exists and every file it lists is there."""
    meta = prefix / "conda-meta" / f"{record.name.normalized}-{record.version}-{record.build}.json"
    if not meta.is_file():
        return f"no {meta.name} in conda-meta"
    files = json.loads(meta.read_text()).get("files", [])
    missing = [f for f in files if not (prefix / f).exists() and not (prefix / f).is_symlink()]
    return f"{len(missing)} of {len(files)} files missing, e.g. {missing[0]}" if missing else None


def _error(result: Run, record: rattler.RepoDataRecord, name: str) -> str:
    line = one_error_line(result)
    named = record.name.normalized in line.lower() or name in line
    assert named, f"the error does not name the package: {line}"
    return line


@pytest.mark.skipif(not FILES, reason="../shared/real-packages is absent (users' clones lack it)")
@pytest.mark.parametrize("name", FILES or ["none"])
def test_real_package_packs_and_unpacks_or_fails_clearly(
    name: str, served: tuple[Path, str], packed: Packed, tmp_path: Path
) -> None:
    assert PACKAGES_DIR is not None
    archive = tmp_path / "env.tar"
    try:
        _record(PACKAGES_DIR / name)
    except Exception as exc:
        # No lock can name a package rattler cannot read; envpack meets such a file through
        # --inject, which must refuse it in one line naming it.
        packing = run(
            "envpack",
            packed.project,
            "--inject",
            PACKAGES_DIR / name,
            "-o",
            archive,
            "--cache",
            packed.cache,
        )
        line = one_error_line(packing, name)
        assert not archive.exists()
        OUTCOMES[name] = ("error", "-", f"(no record: {type(exc).__name__}) {line}")
        return
    record = _lock_for(name, served, packed, tmp_path / "project")
    packing = run("envpack", tmp_path / "project", "-o", archive, "--cache", tmp_path / "cache")
    if packing.returncode != 0:
        line = _error(packing, record, name)
        assert not archive.exists()
        OUTCOMES[name] = ("error", "-", line)
        return
    out = tmp_path / "app"
    unpacking = run("envunpack", archive, "-o", out, "-q")
    if unpacking.returncode != 0:
        line = _error(unpacking, record, name)
        assert not out.exists(), "a failed unpack left a half-written env"
        OUTCOMES[name] = ("packed", "error", line)
        return
    problem = _installed(out / "env", record)
    OUTCOMES[name] = ("packed", "unpacked" if problem is None else "BROKEN", problem or "")
    assert problem is None, problem


def teardown_module() -> None:
    if not OUTCOMES:
        return
    width = max(len(n) for n in OUTCOMES)
    note("real packages (package | pack | unpack | error line):")
    for name, (pack, unpack, line) in sorted(OUTCOMES.items()):
        note(f"  {name:<{width}} | {pack:<6} | {unpack:<8} | {line}")
    counts = [o[1] if o[0] == "packed" else "pack error" for o in OUTCOMES.values()]
    note("  totals: " + ", ".join(f"{c}: {counts.count(c)}" for c in sorted(set(counts))))

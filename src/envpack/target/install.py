"""Linking on the target: verified package files → rattler.install → a conda prefix.

Nothing here reads the archive; receive.py has verified every file before it gets here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import rattler

from envpack.core.errors import ArchiveError, InstallError, cause_text
from envpack.core.layout import CHANNEL_DIR
from envpack.core.progress import Bar, Reporter
from envpack.target.hostcheck import host_virtual_packages
from envpack.target.receive import Received

if TYPE_CHECKING:
    from envpack.core.wheeltags import PythonInfo


def check_wheels(
    got: Received, records: list[rattler.RepoDataRecord], platform: str
) -> PythonInfo | None:
    """Before anything is linked: the wheels need a python and must fit it and this host."""
    if not got.wheels:
        return None
    # Only archives with wheels need packaging's tag rules: a conda-only unpack skips them.
    from envpack.core.wheeltags import check_wheels_compatible, python_info

    python = python_info(records)
    glibc = host_virtual_packages().get("__glibc")
    check_wheels_compatible([Path(m).name for m in got.wheels], python, platform, glibc)
    return python


def records(got: Received, staging: Path) -> list[rattler.RepoDataRecord]:
    """Records from the archive's repodata, each tied to a file that was verified."""
    channel_dir = staging / CHANNEL_DIR
    records: list[rattler.RepoDataRecord] = []
    for name, data in sorted(got.repodata.items()):
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        try:
            repodata = rattler.RepoData.from_path(path)
            records.extend(repodata.into_repo_data(rattler.Channel(channel_dir.as_uri())))
        except Exception as exc:  # noqa: BLE001 - rattler's parse errors have many types
            raise ArchiveError(f"{name} is not valid repodata ({_first_line(exc)})") from None
    by_path = {f"{CHANNEL_DIR}/{r.subdir}/{r.file_name}": r for r in records}
    unknown = sorted(set(got.packages) - set(by_path))
    if unknown:
        raise ArchiveError(f"{unknown[0]} has no record in the archive's repodata.json")
    chosen = []
    for member_path, (_, digest) in sorted(got.packages.items()):
        record = by_path[member_path]
        # pixi-pack archives have no manifest: the repodata's sha256 is then the only guard.
        if record.sha256 is not None and record.sha256.hex() != digest:
            raise ArchiveError(f"{member_path}: sha256 does not match its repodata record")
        if got.flavour.records_must_hash and record.sha256 is None:
            raise ArchiveError(
                f"{member_path}: its repodata record has no sha256 to verify it against"
            )
        chosen.append(record)
    return chosen


def cache_key(record: rattler.RepoDataRecord) -> str:
    """The directory rattler's package cache looks for this record's package in."""
    return f"{record.name.normalized}-{record.version}-{record.build}"


class _LinkProgress(rattler.InstallerReporter):
    """rattler's installer callbacks (from its own threads) driving a package-count bar."""

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter
        self._bar: Bar | None = None

    def on_transaction_start(self, total_operations: int) -> None:
        self._bar = self._reporter.bar("link", total_operations, "pkg")

    def on_transaction_operation_complete(self, operation: int) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_transaction_complete(self) -> None:
        if self._bar is not None:
            self._bar.close()


def link(
    records: list[rattler.RepoDataRecord],
    prefix: Path,
    target: Path,
    cache: Path,
    platform: str,
    execute_link_scripts: bool,
    reporter: Reporter,
) -> None:
    # py-rattler documents its no-op callbacks with docstring-only bodies, which mypy takes
    # for abstract methods; at runtime every callback we do not override is a no-op.
    progress = _LinkProgress(reporter)  # type: ignore[abstract]
    try:
        asyncio.run(
            rattler.install(
                records,
                target_prefix=prefix,
                cache_dir=cache,
                installed_packages=[],
                platform=rattler.Subdir(platform),
                execute_link_scripts=execute_link_scripts,
                show_progress=False,
                reporter=progress,
                # Placeholders get the final path even though we link into staging.
                alternative_target_prefix=target,
            )
        )
    except Exception as exc:  # noqa: BLE001 - rattler raises one opaque type per cause
        raise InstallError(f"could not link the environment: {cause_text(exc)}") from None
    # rattler marks its package cache with a CACHEDIR.TAG and leaves one at the prefix root
    # too; backup tools (tar --exclude-caches, borg, restic) would then skip the deployed env.
    _remove_cachedir_tag(prefix)


def _remove_cachedir_tag(prefix: Path) -> None:
    tag = prefix / "CACHEDIR.TAG"
    if tag.is_file() and not tag.is_symlink():
        tag.unlink()


def write_history(prefix: Path) -> None:
    """conda-meta/history makes `conda run -p` accept the env (as pixi-pack does)."""
    history = prefix / "conda-meta" / "history"
    history.unlink(missing_ok=True)  # never write through whatever a package put there
    fd = os.open(history, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write("// created by envunpack\n")


def compile_env(prefix: Path, target: Path, reporter: Reporter) -> None:
    pythons = sorted(prefix.glob("bin/python3.*[0-9]"))
    if not pythons:
        reporter.warn("--compile: no python in the environment; nothing compiled")
        return
    reporter.info("byte-compiling .py files")
    # -s/-p make the .pyc files name the final path, not the staging one.
    result = subprocess.run(
        [str(pythons[0]), "-m", "compileall", "-q", "-j0", "-s", str(prefix), "-p", str(target)]
        + [str(p) for p in sorted(prefix.glob("lib/python3*"))],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    if result.returncode not in (0, 1):  # 1: some file did not compile, which conda ignores too
        raise InstallError(f"--compile failed: {result.stderr.strip()[-300:]}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

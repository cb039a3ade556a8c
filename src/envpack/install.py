"""Unpacking on the target: open → check → stream-verify → rattler.install → activation.

Everything is built in a staging directory inside the output directory (same filesystem,
so the final step is one rename and rattler can hardlink from its cache). The staging
directory holds a lock while in use; a later run removes abandoned ones.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import rattler

from envpack.activation import SHELLS, activation_scripts
from envpack.archive import Member, members_of
from envpack.errors import ArchiveError, EnvpackError, InstallError, OutputError, output_error
from envpack.hostcheck import (
    check_platform,
    check_virtual_packages,
    host_platform,
    host_virtual_packages,
)
from envpack.manifest import MANIFEST_NAME, PIXI_PACK_NAME, manifest_from_json, pixi_pack_platform
from envpack.models import CHANNEL_DIR, PYPI_DIR, Manifest
from envpack.pkgcheck import check_entries, check_symlinks, package_entries
from envpack.progress import Bar, Reporter
from envpack.wheels import PythonInfo, check_wheels_compatible, install_wheels, python_info

STAGING_PREFIX = ".envpack-staging-"
_METADATA_LIMIT = 64 << 20  # repodata.json of a huge env is a few MB; more is an attack
_CHUNK = 1 << 20
_ENV_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_NO_SUCH_SCRIPT = {
    "cmd": "cmd.exe scripts only run on Windows and this environment is for Linux",
    "nushell": "rattler (which writes the scripts) has no nushell activation yet",
}


@dataclass(frozen=True)
class UnpackOptions:
    output_dir: Path
    env_name: str = "env"
    shell: str = "bash"
    force: bool = False
    compile: bool = False
    execute_link_scripts: bool = False


@dataclass(frozen=True)
class UnpackResult:
    prefix: Path
    scripts: tuple[Path, ...]
    platform: str
    packages: int
    wheels: int


@dataclass
class _Received:
    """What the archive delivered into staging, verified as it streamed."""

    manifest: Manifest | None = None
    platform: str | None = None
    repodata: dict[str, bytes] = field(default_factory=dict)
    packages: dict[str, tuple[Path, str]] = field(default_factory=dict)  # path → (file, sha256)
    wheels: dict[str, Path] = field(default_factory=dict)


# --- public API ----------------------------------------------------------------------------


def read_manifest(source: BinaryIO | Path) -> Manifest | dict[str, object]:
    """The manifest of an envpack archive, or a summary of a pixi-pack one; writes nothing."""
    members = members_of(source)
    summary: dict[str, object] = {"format": "pixi-pack", "artifacts": []}
    for member in members:
        if member.name == MANIFEST_NAME:
            return manifest_from_json(_read_small(member))
        if member.name == PIXI_PACK_NAME:
            summary["platform"] = pixi_pack_platform(_read_small(member))
        elif _is_artifact(member.name):
            summary["artifacts"].append({"path": member.name, "size": member.size})  # type: ignore[attr-defined]
            _drain(member)
    if "platform" not in summary:
        raise ArchiveError("not an envpack or pixi-pack archive (no envpack.json/pixi-pack.json)")
    return summary


def unpack(source: BinaryIO | Path, options: UnpackOptions, reporter: Reporter) -> UnpackResult:
    if not _ENV_NAME.fullmatch(options.env_name) or options.env_name in (".", ".."):
        raise EnvpackError(f"invalid --env-name {options.env_name!r}: use letters, digits, ._+-")
    if options.shell in _NO_SUCH_SCRIPT:
        # pixi-unpack takes these; one line says why the script is for bash instead.
        reporter.warn(
            f"--shell {options.shell}: {_NO_SUCH_SCRIPT[options.shell]}; "
            "writing the bash activation script instead"
        )
        options = replace(options, shell="bash")  # noqa: S604 - a dataclass field, no subprocess
    if options.shell not in SHELLS:
        raise EnvpackError(f"unknown --shell {options.shell!r}; choose from {', '.join(SHELLS)}")
    out_dir = options.output_dir.absolute()
    target = out_dir / options.env_name
    if _non_empty(target) and not options.force:
        raise OutputError(f"{target} already exists; pass --force to replace it")
    created = _ensure_dir(out_dir)
    succeeded = False
    try:
        _clean_abandoned(out_dir, reporter)
        with _staging(out_dir, options.env_name) as staging:
            result = _unpack_into(source, options, reporter, staging, target)
        succeeded = True
        return result
    except OSError as exc:
        raise output_error(out_dir, exc, "unpacking into") from None
    finally:
        if not succeeded:
            _remove_created(created)


# --- the steps -----------------------------------------------------------------------------


def _unpack_into(
    source: BinaryIO | Path, options: UnpackOptions, reporter: Reporter, staging: Path, target: Path
) -> UnpackResult:
    received = _receive(source, staging, reporter)
    platform = received.platform or host_platform()
    records = _records(received, staging)
    python = _check_wheels(received, records, platform)
    # Before linking: rattler follows paths.json blindly, so hostile lists never reach it.
    owners = check_entries(
        (f"{path.rsplit('/', 1)[-1]}", package_entries(file))
        for path, (file, _) in sorted(received.packages.items())
    )
    prefix = staging / "prefix"
    reporter.info(f"installing {len(records)} packages into {target}")
    _link(records, prefix, target, staging / "pkgs", platform, options, reporter)
    if python is not None:
        reporter.info(f"installing {len(received.wheels)} PyPI wheels")
        install_wheels(prefix, target, received.wheels, python, reporter)
    check_symlinks(prefix, target, owners)
    _write_history(prefix)
    if options.compile:
        _compile(prefix, target, reporter)
    _move_into_place(prefix, target, staging)
    scripts = _write_scripts(target, options.shell, platform)
    return UnpackResult(target, scripts, platform, len(records), len(received.wheels))


def _receive(source: BinaryIO | Path, staging: Path, reporter: Reporter) -> _Received:
    """Stream the archive into staging, refusing anything unexpected or unverified."""
    got = _Received()
    channel = staging / CHANNEL_DIR
    bar: Bar = reporter.bar("verify", None, "B")
    try:
        for index, member in enumerate(members_of(source)):
            if index == 0 and member.name == MANIFEST_NAME:
                got.manifest = manifest_from_json(_read_small(member))
                got.platform = got.manifest.platform
                _check_host(got.manifest.platform, got.manifest.virtual_packages)
                bar.close()  # now the total is known
                total = sum(a.size or 0 for a in got.manifest.artifacts)
                bar = reporter.bar("verify", total, "B")
                continue
            if member.name == PIXI_PACK_NAME:
                platform = pixi_pack_platform(_read_small(member))
                if got.manifest is not None and platform != got.manifest.platform:
                    raise ArchiveError("pixi-pack.json and envpack.json disagree on the platform")
                if got.manifest is None:
                    got.platform = platform
                    _check_host(platform, ())
                continue
            if member.name == MANIFEST_NAME:
                raise ArchiveError(f"{MANIFEST_NAME} must be the first member of the archive")
            if member.name == "environment.yml":
                _read_small(member)
                continue
            if _is_repodata(member.name):
                _accept_repodata(got, member)
                continue
            if not _is_artifact(member.name):
                if got.manifest is not None:
                    raise ArchiveError(f"unexpected archive member {member.name!r}")
                reporter.warn(f"ignoring unknown archive member {member.name!r}")
                _drain(member)
                continue
            if got.platform is None:
                raise ArchiveError("not an envpack or pixi-pack archive (no metadata first)")
            dest = channel.parent / member.name
            digest = _store(member, dest, got.manifest, bar)
            if member.name.startswith(PYPI_DIR + "/"):
                got.wheels[member.name] = dest
            else:
                got.packages[member.name] = (dest, digest)
    finally:
        bar.close()
    if got.platform is None:
        raise ArchiveError("not an envpack or pixi-pack archive (no envpack.json/pixi-pack.json)")
    if got.manifest is not None:
        missing = [a.path for a in got.manifest.artifacts if a.path not in got.packages]
        missing = [m for m in missing if m not in got.wheels]
        if missing:
            raise ArchiveError(f"archive is missing {len(missing)} artifacts, e.g. {missing[0]}")
    return got


def _check_wheels(
    got: _Received, records: list[rattler.RepoDataRecord], platform: str
) -> PythonInfo | None:
    """Before anything is linked: the wheels need a python and must fit it and this host."""
    if not got.wheels:
        return None
    python = python_info(records)
    glibc = host_virtual_packages().get("__glibc")
    check_wheels_compatible([Path(m).name for m in got.wheels], python, platform, glibc)
    return python


def _accept_repodata(got: _Received, member: Member) -> None:
    subdir = member.name.split("/")[1]
    # With a manifest, only the two subdirs an env can use; without one (pixi-pack), any,
    # but all repodata together is capped: it is held in memory.
    if got.manifest is not None and subdir not in ("noarch", got.manifest.platform):
        raise ArchiveError(f"unexpected archive member {member.name!r}")
    held = sum(len(v) for v in got.repodata.values())
    if held + member.size > _METADATA_LIMIT:
        raise ArchiveError("the archive's repodata.json files are implausibly large")
    got.repodata[member.name] = _read_small(member)


def _check_host(platform: str, virtual: tuple[str, ...]) -> None:
    check_platform(platform, host_platform())
    check_virtual_packages(virtual, host_virtual_packages())


def _store(member: Member, dest: Path, manifest: Manifest | None, bar: Bar) -> str:
    """Copy one artifact to staging, hashing as it streams; the manifest must agree."""
    expected = manifest.artifact_for(member.name) if manifest is not None else None
    if manifest is not None:
        if expected is None:
            raise ArchiveError(f"archive member {member.name!r} is not in the manifest")
        # Checked from the header, before reading: a lying member cannot inflate past this.
        if member.size != expected.size:
            raise ArchiveError(
                f"{member.name}: {member.size} bytes in the archive, manifest says {expected.size}"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256()
    with dest.open("xb") as out:
        while chunk := member.stream.read(_CHUNK):
            sha.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    digest = sha.hexdigest()
    if expected is not None and digest != expected.sha256:
        raise ArchiveError(
            f"{member.name}: sha256 {digest} does not match the manifest's {expected.sha256}; "
            "the archive is corrupt or was tampered with"
        )
    return digest


def _records(got: _Received, staging: Path) -> list[rattler.RepoDataRecord]:
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
        if got.manifest is None and record.sha256 is None:
            raise ArchiveError(
                f"{member_path}: its repodata record has no sha256 to verify it against"
            )
        chosen.append(record)
    return chosen


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


def _link(
    records: list[rattler.RepoDataRecord],
    prefix: Path,
    target: Path,
    cache: Path,
    platform: str,
    options: UnpackOptions,
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
                execute_link_scripts=options.execute_link_scripts,
                show_progress=False,
                reporter=progress,
                # Placeholders get the final path even though we link into staging.
                alternative_target_prefix=target,
            )
        )
    except Exception as exc:  # noqa: BLE001 - rattler raises one opaque type per cause
        raise InstallError(f"could not link the environment: {_cause_chain(exc)}") from None


def _write_history(prefix: Path) -> None:
    """conda-meta/history makes `conda run -p` accept the env (as pixi-pack does)."""
    history = prefix / "conda-meta" / "history"
    history.unlink(missing_ok=True)  # never write through whatever a package put there
    fd = os.open(history, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write("// created by envunpack\n")


def _compile(prefix: Path, target: Path, reporter: Reporter) -> None:
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


def _move_into_place(prefix: Path, target: Path, staging: Path) -> None:
    if target.exists() or target.is_symlink():
        # --force: move the old env aside first so the swap is two renames, not a long rmtree.
        old = staging / "old"
        target.rename(old)
    prefix.rename(target)


def _write_scripts(target: Path, shell: str, platform: str) -> tuple[Path, ...]:
    written = []
    for name, content in activation_scripts(target, shell, platform).items():
        path = target.parent / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(content)
        tmp.chmod(0o755)
        tmp.replace(path)
        written.append(path)
    return tuple(written)


# --- staging and cleanup -------------------------------------------------------------------


@contextmanager
def _staging(out_dir: Path, env_name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{env_name}-", dir=out_dir))
    lock = (path / ".lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # tells a concurrent run this staging dir is alive
    try:
        yield path
    finally:
        _rmtree_settled(path)
        lock.close()


def _clean_abandoned(out_dir: Path, reporter: Reporter) -> None:
    """Remove staging dirs left by a killed run; live ones hold their lock and are skipped."""
    for leftover in out_dir.glob(f"{STAGING_PREFIX}*"):
        try:
            with (leftover / ".lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        except OSError:
            pass
        reporter.info(f"removing leftovers of an interrupted run: {leftover.name}")
        shutil.rmtree(leftover, ignore_errors=True)


def _ensure_dir(path: Path) -> list[Path]:
    """Create `path` and missing parents; return what was created, deepest first."""
    if path.is_dir():
        return []
    if path.exists():
        raise OutputError(f"{path} exists and is not a directory")
    created = []
    probe = path
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise output_error(path, exc, "creating") from None
    return created


def _remove_created(created: list[Path]) -> None:
    """Undo _ensure_dir after a failure, but never remove anything that is not empty."""
    for path in created:
        with suppress(OSError):
            path.rmdir()


def _remove_tree(path: Path) -> None:
    """rmtree, with the unlinks spread over threads: the staging cache holds tens of
    thousands of files, and one thread unlinking them was a third of an unpack."""
    files: list[Path] = []
    dirs: list[Path] = []
    for root, dirnames, filenames in os.walk(path):
        base = Path(root)
        dirs.append(base)
        files.extend(base / name for name in filenames)
        # os.walk lists links to directories among dirnames but does not enter them.
        files.extend(base / name for name in dirnames if (base / name).is_symlink())
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in pool.map(_unlink_quietly, files):
            pass
    for directory in reversed(dirs):
        with suppress(OSError):
            directory.rmdir()
    shutil.rmtree(path, ignore_errors=True)  # whatever the walk could not see


def _unlink_quietly(path: Path) -> None:
    with suppress(OSError):
        path.unlink()


def _rmtree_settled(path: Path) -> None:
    """Remove a tree, again if needed: after a failed link, rattler's worker threads may
    still be finishing writes into staging for a moment after install() has raised."""
    for _ in range(50):
        _remove_tree(path)
        if not path.exists():
            return
        time.sleep(0.1)


def _non_empty(path: Path) -> bool:
    if path.is_symlink() or path.is_file():
        return True
    return path.is_dir() and any(path.iterdir())


# --- small helpers -------------------------------------------------------------------------


def _is_repodata(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 3 and parts[0] == CHANNEL_DIR and parts[2] == "repodata.json"


def _is_artifact(name: str) -> bool:
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == CHANNEL_DIR:
        return parts[2].endswith((".conda", ".tar.bz2"))
    return len(parts) == 2 and parts[0] == PYPI_DIR and parts[1].endswith(".whl")


def _read_small(member: Member) -> bytes:
    if member.size > _METADATA_LIMIT:
        raise ArchiveError(f"{member.name} is implausibly large ({member.size} bytes)")
    return member.stream.read()


def _drain(member: Member) -> None:
    while member.stream.read(_CHUNK):
        pass


def _cause_chain(exc: BaseException) -> str:
    """rattler's first line names the package, its last `Caused by` says why: keep both."""
    lines = [" ".join(line.replace("\x00", " ").split()) for line in str(exc).splitlines()]
    lines = [line.removeprefix("Caused by: ") for line in lines if line]
    if not lines:
        return type(exc).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]}: {lines[-1]}"
    return text if len(text) <= 300 else text[:297] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(manifest: Manifest | dict[str, object]) -> dict[str, object]:
    """A JSON-able view of what `--list` shows."""
    if isinstance(manifest, Manifest):
        return {
            "format": "envpack",
            "format_version": manifest.format_version,
            "envpack_version": manifest.envpack_version,
            "platform": manifest.platform,
            "environment": manifest.environment,
            "virtual_packages": list(manifest.virtual_packages),
            "artifacts": [
                {
                    "path": a.path,
                    "name": a.name,
                    "version": a.version,
                    "build": a.build,
                    "size": a.size,
                    "sha256": a.sha256,
                }
                for a in manifest.artifacts
            ],
        }
    return dict(manifest)

"""Unpacking on the target, step by step: head → staging → verify → link → wheels → rename.

Nothing is created at the destination until the archive's head (manifest, platform, glibc)
has been read and checked, and the env appears only by one rename once it is complete.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from envpack.core.errors import OutputError, UsageError, output_error
from envpack.core.interrupt import uninterruptible
from envpack.core.layout import SBOM_NAME
from envpack.core.models import Manifest
from envpack.core.progress import Reporter
from envpack.target.activation import SHELLS, activation_scripts, check_env_vars, script_names
from envpack.target.extract import Extractor, place
from envpack.target.install import (
    cache_key,
    check_wheels,
    compile_env,
    link,
    records,
    write_history,
)
from envpack.target.pkgcheck import check_entries, check_symlinks
from envpack.target.receive import Reader, Received, read_manifest
from envpack.target.sbomread import is_our_sbom, write_copy
from envpack.target.staging import (
    clean_abandoned,
    ensure_dir,
    non_empty,
    remove_created,
    staging_dir,
)

_PIXI_PACK_BUDGET = 16 << 20
_ENV_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_NO_SUCH_SCRIPT = {
    "cmd": "cmd.exe scripts only run on Windows and this environment is for Linux",
    "nushell": "rattler (which writes the scripts) has no nushell activation yet",
}

__all__ = [
    "CheckResult",
    "UnpackOptions",
    "UnpackResult",
    "check",
    "check_destination",
    "read_manifest",
    "unpack",
]


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
    manifest: Manifest | None
    packages: int
    wheels: int
    sbom: Path | None = None


@dataclass(frozen=True)
class CheckResult:
    platform: str
    manifest: Manifest | None
    packages: int
    wheels: int
    size: int


def unpack(source: BinaryIO | Path, options: UnpackOptions, reporter: Reporter) -> UnpackResult:
    options = check_destination(options, reporter)
    out_dir = options.output_dir.absolute()
    target = out_dir / options.env_name
    reader = Reader(source)
    reader.head()  # before anything exists at the destination
    created = ensure_dir(out_dir)
    succeeded = False
    try:
        clean_abandoned(out_dir, reporter)
        with staging_dir(out_dir, options.env_name) as staging:
            result = _unpack_into(reader, options, reporter, staging, target)
        succeeded = True
        return result
    except OSError as exc:
        raise output_error(out_dir, exc, "unpacking into") from None
    finally:
        if not succeeded:
            remove_created(created)


def check_destination(options: UnpackOptions, reporter: Reporter) -> UnpackOptions:
    """The options checked, and what is at -o refused unless --force: before any download
    (a registry pull) or read, so a run that cannot succeed costs nothing."""
    options = _check_options(options, reporter)
    out_dir = options.output_dir.absolute()
    target = out_dir / options.env_name
    if not options.force:
        if non_empty(target):
            raise OutputError(f"{target} already exists; pass --force to replace it")
        for name in script_names(options.shell):
            # A user's own activate.sh beside the env is as precious as the env itself;
            # one that envunpack wrote for this very env is not.
            path = out_dir / name
            if non_empty(path) and not _ours(path, target):
                raise OutputError(f"{path} already exists; pass --force to replace it")
        sbom = out_dir / SBOM_NAME
        if non_empty(sbom) and not is_our_sbom(sbom):
            raise OutputError(f"{sbom} already exists; pass --force to replace it")
    return options


def check(source: BinaryIO | Path, reporter: Reporter) -> CheckResult:
    """Everything unpack verifies (format, platform, glibc, every hash, wheel fit), no writes.

    The repodata goes to a private temp dir for rattler to parse; nothing else touches disk.
    """
    reader = Reader(source)
    reader.head()
    got = reader.rest(None, reporter)
    with tempfile.TemporaryDirectory(prefix="envunpack-check-") as tmp:
        chosen = records(got, Path(tmp))
        check_wheels(got, chosen, _platform(got))
    size = sum(a.size or 0 for a in got.manifest.artifacts) if got.manifest else 0
    return CheckResult(_platform(got), got.manifest, len(chosen), len(got.wheels), size)


def _check_options(options: UnpackOptions, reporter: Reporter) -> UnpackOptions:
    if not _ENV_NAME.fullmatch(options.env_name) or options.env_name in (".", ".."):
        raise UsageError(f"invalid --env-name {options.env_name!r}: use letters, digits, ._+-")
    if options.shell in _NO_SUCH_SCRIPT:
        # pixi-unpack takes these; one line says why the script is for bash instead.
        reporter.warn(
            f"--shell {options.shell}: {_NO_SUCH_SCRIPT[options.shell]}; "
            "writing the bash activation script instead"
        )
        options = replace(options, shell="bash")  # noqa: S604 - a dataclass field, no subprocess
    if options.shell not in SHELLS:
        raise UsageError(f"unknown --shell {options.shell!r}; choose from {', '.join(SHELLS)}")
    return options


def _platform(got: Received) -> str:
    assert got.platform is not None  # Reader.head() refuses archives without one
    return got.platform


def _unpack_into(
    reader: Reader, options: UnpackOptions, reporter: Reporter, staging: Path, target: Path
) -> UnpackResult:
    cache = staging / "pkgs"
    with Extractor(staging / "extracting", _staging_budget(reader.got)) as extractor:
        got = reader.rest(staging, reporter, extractor)
        dirs = extractor.finish()
    platform = _platform(got)
    chosen = records(got, staging)
    python = check_wheels(got, chosen, platform)
    # records() returns one record per package, in the packages' sorted order.
    keys = {path: cache_key(r) for path, r in zip(sorted(got.packages), chosen, strict=True)}
    # Every package under the name rattler's cache gives its record: install then only links.
    place(dirs, keys, cache)
    # Before linking: rattler follows paths.json blindly, so hostile lists never reach it.
    owners = check_entries(
        (path.rsplit("/", 1)[-1], extractor.entries(path, cache / key))
        for path, key in sorted(keys.items())
    )
    prefix = staging / "prefix"
    reporter.info(f"installing {len(chosen)} packages into {target}")
    link(chosen, prefix, target, cache, platform, options.execute_link_scripts, reporter)
    if python is not None:
        # pypa installer (and the email package under it) only for archives with wheels.
        from envpack.target.wheels import install_wheels

        reporter.info(f"installing {len(got.wheels)} PyPI wheels")
        wheels = {name: path for name, path in got.wheels.items() if path is not None}
        install_wheels(prefix, target, wheels, python, reporter)
    check_symlinks(prefix, target, owners)
    check_env_vars(prefix)
    write_history(prefix)
    if options.compile:
        compile_env(prefix, target, reporter)
    with uninterruptible():  # the swap and the scripts happen whole or not at all
        _move_into_place(prefix, target, staging)
        scripts = _write_scripts(target, options.shell, platform)
        sbom = write_copy(target.parent, got.sbom)
    return UnpackResult(target, scripts, platform, got.manifest, len(chosen), len(got.wheels), sbom)


def _staging_budget(got: Received) -> int:
    """How many bytes of package archives may sit staged at once, waiting for extraction.

    Only where the kernel lacks memfd (else the read-ahead is in RAM, extract.MEMORY_BUDGET).
    A tenth of the packages keeps the peak extra disk well under their size; the rest are
    piped straight into extraction. A pixi-pack archive does not say its size up front.
    """
    total = got.flavour.total
    return total // 10 if total is not None else _PIXI_PACK_BUDGET


def _move_into_place(prefix: Path, target: Path, staging: Path) -> None:
    if target.exists() or target.is_symlink():
        # --force: move the old env aside first so the swap is two renames, not a long rmtree.
        old = staging / "old"
        target.rename(old)
    prefix.rename(target)


def _marker(target: Path) -> str:
    # `#` starts a comment in every shell we write for (sh, fish, xonsh, PowerShell).
    return f"# written by envunpack for {target}\n"


def _ours(path: Path, target: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4096).startswith(_marker(target).encode())
    except OSError:
        return False


def _write_scripts(target: Path, shell: str, platform: str) -> tuple[Path, ...]:
    written = []
    for name, content in activation_scripts(target, shell, platform).items():
        path = target.parent / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(_marker(target) + content)
        tmp.chmod(0o755)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # only reached with --force: checked before the unpack
        tmp.replace(path)
        written.append(path)
    return tuple(written)


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
            "sbom": (
                {"path": manifest.sbom.path, "sha256": manifest.sbom.sha256}
                if manifest.sbom is not None
                else None
            ),
            "artifacts": manifest.artifacts,
        }
    return {"environment": None, "virtual_packages": [], **manifest}

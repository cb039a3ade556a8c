"""App files (`--create-executable --entrypoint`): the launcher in front of the unpacker.

    [launcher][entrypoint argv, NUL-separated][static envunpack][head][archive][trailer]

The launcher (launcher/launcher.c) carries a block the packer fills in: where the argv and
the envunpack lie in the file. The trailer and head are those of any self-extracting file,
with absolute offsets, so envunpack reads the payload of an app file unchanged.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from envpack.core import elf
from envpack.core.errors import EnvpackError, UsageError
from envpack.core.layout import ARCHES
from envpack.core.progress import Reporter
from envpack.packer.fetch import Fetched

LAUNCHER_MAGIC = b"envpack-applnch\0"
_BLOCK = struct.Struct("<16sQQQQ")


@dataclass(frozen=True)
class App:
    argv: list[str]
    launcher: Path

    def prefix(self, fetched: Iterable[Fetched], unpacker_size: int, reporter: Reporter) -> bytes:
        """Checked against the downloaded packages: the bytes before the envunpack."""
        names, scripts = package_files(fetched)
        check_entrypoint(self.argv, names)
        if scripts:
            reporter.warn(
                f"the env has activate.d scripts ({', '.join(sorted(scripts)[:3])}): the app "
                "runs them through /bin/sh, and a target without /bin/sh gets the env's "
                "variables only"
            )
        return launcher_prefix(self.launcher.read_bytes(), self.argv, unpacker_size)


def prepare(entrypoint: str | None, platform: str, unpacker: Path | None) -> App | None:
    """The entrypoint's argv and the launcher, for an app file; None for any other output."""
    if entrypoint is None:
        return None
    if unpacker is None:
        raise UsageError("--entrypoint needs --create-executable: it makes one runnable file")
    argv = parse_entrypoint(entrypoint)
    search = [Path(p) for p in os.environ.get("ENVPACK_UNPACKER_DIR", "").split(":") if p]
    return App(argv, find_launcher(platform, unpacker, [*search, Path.cwd() / "dist"]))


def parse_entrypoint(text: str) -> list[str]:
    """`python -m myapp` or `myapp --flag`: a command of the env's bin/, with fixed args."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"--entrypoint {text!r}: {exc}") from None
    if not argv:
        raise UsageError("--entrypoint is empty: give a command of the env's bin/")
    if "/" in argv[0]:
        raise UsageError(
            f"--entrypoint {argv[0]}: give a command name of the env's bin/ (not a path)"
        )
    if any("\0" in a for a in argv):
        raise UsageError("--entrypoint must not contain NUL characters")
    return argv


def package_files(fetched: Iterable[Fetched]) -> tuple[set[str], set[str]]:
    """The names the env's bin/ will have (conda packages' files, wheels' scripts, noarch
    entry points), and the activate.d shell scripts the packages ship."""
    from rattler.package import IndexJson, PathsJson

    names: set[str] = set()
    scripts: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="envpack-entrypoint-") as scratch:
        for item in fetched:
            if item.artifact.kind != "conda":
                names |= _wheel_scripts(item.path)
                continue
            # rattler tells the archive's format by its name; the cache's files have none.
            named = Path(scratch) / PurePosixPath(item.artifact.path).name
            named.unlink(missing_ok=True)
            named.symlink_to(item.path)
            for entry in PathsJson.from_package_archive(named).paths:
                parts = entry.relative_path.parts
                if len(parts) == 2 and parts[0] == "bin":
                    names.add(parts[1])
                elif parts[:3] == ("etc", "conda", "activate.d") and parts[-1].endswith(".sh"):
                    scripts.add(parts[-1])
            if IndexJson.from_package_archive(named).noarch.python:
                names |= _noarch_entry_points(named, Path(scratch) / "x")
    return names, scripts


def _noarch_entry_points(package: Path, scratch: Path) -> set[str]:
    """A noarch python package's bin/ scripts are written at link time from link.json."""
    from rattler.package_streaming import extract

    shutil.rmtree(scratch, ignore_errors=True)
    extract(package, scratch)
    try:
        link = json.loads((scratch / "info" / "link.json").read_text())
    except (OSError, ValueError):
        return set()
    points = (link.get("noarch") or {}).get("entry_points") or []
    return {p.split("=", 1)[0].strip() for p in points if isinstance(p, str) and "=" in p}


def _wheel_scripts(path: Path) -> set[str]:
    names: set[str] = set()
    with zipfile.ZipFile(path) as wheel:
        for member in wheel.namelist():
            parts = member.split("/")
            if len(parts) == 3 and parts[0].endswith(".data") and parts[1] == "scripts":
                names.add(parts[2])
            elif (
                len(parts) == 2
                and parts[0].endswith(".dist-info")
                and parts[1] == ("entry_points.txt")
            ):
                config = configparser.ConfigParser(delimiters=("=",))
                config.optionxform = str  # type: ignore[assignment,method-assign]
                config.read_string(wheel.read(member).decode())
                for section in ("console_scripts", "gui_scripts"):
                    if config.has_section(section):
                        names.update(config.options(section))
    return names


def check_entrypoint(argv: list[str], names: set[str]) -> None:
    """Refuse, at pack time, an entrypoint that the env will not have."""
    if argv[0] in names:
        return
    if argv[0] == "python" and len(argv) >= 3 and argv[1] == "-m":
        raise EnvpackError(f"--entrypoint {shlex.join(argv)}: the env has no python in bin/")
    near = sorted(n for n in names if argv[0].lower() in n.lower())[:5]
    hint = f" (similar: {', '.join(near)})" if near else ""
    raise EnvpackError(
        f"--entrypoint {argv[0]}: the env's bin/ has no such command{hint}; "
        "give one of its commands or 'python -m MODULE'"
    )


def find_launcher(platform: str, unpacker: Path, search: list[Path]) -> Path:
    """The launcher beside the chosen envunpack, else in the unpacker search path."""
    arch = ARCHES[platform]
    name = f"envpack-launcher-{arch}-linux"
    for directory in [unpacker.parent, *search]:
        candidate = directory / name
        if candidate.is_file():
            if elf.machine(candidate) != arch:
                raise EnvpackError(f"{candidate} is not an {arch} launcher; rebuild it")
            return candidate
    raise EnvpackError(
        f"no {name} beside {unpacker}: build it with `scripts/build-launcher --arch {arch}` "
        "and put it beside the envunpack (or in $ENVPACK_UNPACKER_DIR)"
    )


def launcher_prefix(launcher: bytes, argv: list[str], unpacker_size: int) -> bytes:
    """The launcher with its block filled in, followed by the argv: what precedes envunpack."""
    at = launcher.find(LAUNCHER_MAGIC)
    if at < 0 or launcher.find(LAUNCHER_MAGIC, at + 1) >= 0:
        raise EnvpackError("the launcher has no (or more than one) app block; rebuild it")
    block = b"".join(a.encode() + b"\0" for a in argv) + b"\0"
    if len(block) >= 8192:
        raise UsageError("--entrypoint is too long (8 KiB at most)")
    argv_at = len(launcher)
    unpacker_at = argv_at + len(block)
    filled = _BLOCK.pack(LAUNCHER_MAGIC, argv_at, len(block), unpacker_at, unpacker_size)
    return launcher[:at] + filled + launcher[at + len(filled) :] + block

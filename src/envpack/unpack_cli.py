"""`envunpack`: verify an archive and relink it into a working environment.

Typer only. Imports nothing that only packing needs, and loads rattler lazily so that
`--help` and `--version` of the frozen binary start fast.
"""

from __future__ import annotations

import io
import os
import select
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from envpack.buildinfo import version_line
from envpack.cliutil import completion_option, new_app
from envpack.cliutil import main as run_main
from envpack.errors import ArchiveError, EnvpackError, UsageError
from envpack.jsonout import document
from envpack.models import Artifact
from envpack.textout import columns

if TYPE_CHECKING:
    from envpack.unpack import CheckResult

# The activation flavours; kept here as names so that --help needs no rattler import.
SHELL_NAMES = ("bash", "zsh", "sh", "fish", "xonsh", "powershell")


def activation_hint(script: Path, shell: str) -> str:
    """What to type to activate: `. /app/activate.sh`, or `source` for fish; quoted."""
    verb = "source" if shell == "fish" else "."
    return f"{verb} {shlex.quote(str(script))}"


app = new_app()
DEFAULT_PACK = "environment.tar"


def _version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.command()
def main_command(
    archive: Annotated[
        str | None,
        typer.Argument(
            help="Archive made by envpack or pixi-pack (or one written as a folder); "
            "'-' reads stdin. Omit it when this program is a self-extracting file.",
            show_default=False,
        ),
    ] = None,
    output_directory: Annotated[
        Path,
        typer.Option(
            "-o", "--output-directory", metavar="DIR", help="Where the env and its scripts go."
        ),
    ] = Path(),
    env_name: Annotated[
        str, typer.Option("-e", "--env-name", help="Name of the env directory inside -o.")
    ] = "env",
    shell: Annotated[
        str,
        typer.Option(
            "-s",
            "--shell",
            help=f"Shell of the activation script: {', '.join(SHELL_NAMES)} "
            "(cmd and nushell: bash, with a warning).",
        ),
    ] = "bash",
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace an existing env and its activate/deactivate scripts."
        ),
    ] = False,
    compile_pyc: Annotated[
        bool, typer.Option("--compile", help="Byte-compile .py files with the env's python.")
    ] = False,
    execute_link_scripts: Annotated[
        bool,
        typer.Option(
            "--execute-link-scripts",
            help="Run the packages' post-link scripts (they run unsandboxed).",
        ),
    ] = False,
    list_only: Annotated[
        bool,
        typer.Option(
            "--list", help="Print the manifest and touch nothing (hashes are not checked)."
        ),
    ] = False,
    check_only: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Verify everything unpacking would (format, platform, glibc, every hash) "
            "and write nothing; exit 0 if the archive is good.",
        ),
    ] = False,
    sbom: Annotated[
        bool,
        typer.Option(
            "--sbom",
            help="With --list: print the archive's CycloneDX SBOM, verified against its "
            "manifest (for a pixi-pack archive, one made from its repodata).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only errors and warnings.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Say more.")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
    completion: Annotated[str | None, completion_option("envunpack")] = None,
    app: Annotated[bool, typer.Option("--app", hidden=True)] = False,  # the app launcher's
    remove_app: Annotated[Path | None, typer.Option("--remove-app", hidden=True)] = None,
) -> None:
    """Unpack ARCHIVE into DIR/env and write DIR/activate.sh (and deactivate.sh).

    Before anything is written the archive is checked: its format version, its platform and
    glibc against this machine, and every package's sha256 as it streams. The env is built
    beside its final place and renamed when complete, so an interrupted run never leaves a
    half-built env. No Python is needed on this machine.

    Examples:

      envunpack env.tar -o /app        # then: . /app/activate.sh

      envunpack --check env.tar        # verify only, write nothing

      envunpack --list env.tar         # what is inside

      envunpack --list --sbom env.tar  # its CycloneDX SBOM, verified

      cat env.tar | envunpack - -o /app
    """
    if list_only and check_only:
        raise UsageError("--list and --check exclude each other; --check also lists with --json")
    if sbom and not list_only:
        raise UsageError(
            "--sbom only works with --list; an unpacked env gets its SBOM beside activate.sh"
        )
    if remove_app is not None:  # --envpack-uninstall of an app file
        from envpack.appinstall import remove_app as remove

        remove(remove_app)
        print(f"removed {remove_app}", file=sys.stderr)
        return
    from envpack.certs import ensure_ca_certificates

    ensure_ca_certificates()  # rattler panics without CA certificates, even offline
    from envpack import unpack
    from envpack.progress import Reporter, SilentReporter, TqdmReporter

    reporter: Reporter = SilentReporter() if quiet or as_json else TqdmReporter(verbose=verbose)
    with _ArchiveSource(archive) as source:
        if sbom:
            _print_sbom(source)
            return
        if list_only:
            _print_listing(unpack.describe(unpack.read_manifest(source)), as_json)
            return
        if check_only:
            checked = unpack.check(source, reporter)
            _print_check(checked, as_json, quiet)
            return
        options = unpack.UnpackOptions(
            output_dir=output_directory,
            env_name=env_name,
            shell=shell,
            force=force,
            compile=compile_pyc,
            execute_link_scripts=execute_link_scripts,
        )
        result = unpack.unpack(source, options, reporter)
    if app:
        from envpack.appinstall import write_app_env

        wants_shell = write_app_env(output_directory.absolute(), result.prefix, result.platform)
        if wants_shell and not Path("/bin/sh").exists():
            reporter.warn(
                "the env has activate.d scripts but this machine has no /bin/sh: "
                "the app runs with the env's variables only"
            )
    if as_json:
        typer.echo(
            document(
                "unpack",
                platform=result.platform,
                environment=result.manifest.environment if result.manifest else None,
                artifacts=result.manifest.artifacts if result.manifest else [],
                prefix=str(result.prefix),
                scripts=[str(p) for p in result.scripts],
                packages=result.packages,
                wheels=result.wheels,
                sbom=str(result.sbom) if result.sbom else None,
            )
        )
    elif not quiet:
        activate = result.scripts[0] if result.scripts else None
        hint = f"; activate with: {activation_hint(activate, shell)}" if activate else ""
        print(f"unpacked {result.packages} packages into {result.prefix}{hint}", file=sys.stderr)


class _PolledPipe(io.RawIOBase):
    """A pipe read that returns to Python four times a second while no data comes.

    A signal may be delivered to any thread, and rattler starts threads of its own: one
    that lands there leaves a main thread blocked in read() with its handler pending until
    data arrives. Waiting in short select()s lets Ctrl-C and SIGTERM act within 0.25 s.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not select.select([self._fd], [], [], 0.25)[0]:
            pass
        data = os.read(self._fd, len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _stdin() -> BinaryIO:
    return io.BufferedReader(_PolledPipe(sys.stdin.fileno()), buffer_size=1 << 20)


class _ArchiveSource:
    """The archive to read: a file, stdin, a self-extracting file, or this very program."""

    def __init__(self, archive: str | None) -> None:
        self._archive = archive
        self._file: BinaryIO | None = None

    def __enter__(self) -> BinaryIO | Path:
        from envpack import selfextract

        if self._archive == "-":
            if sys.stdin.isatty():
                raise UsageError(
                    "refusing to read an archive from a terminal; pipe one in "
                    "(cat env.tar | envunpack - -o DIR) or name the file"
                )
            return _stdin()
        if self._archive is None:
            program = selfextract.own_executable()
            payload = selfextract.find_payload(program)
            if payload is None and Path(DEFAULT_PACK).is_file():
                # pixi-unpack's default: the pack pixi-pack writes by default, here.
                self._file = Path(DEFAULT_PACK).open("rb")
                return self._file
            if payload is None:
                cut = selfextract.truncation(program)
                if cut is not None:
                    raise ArchiveError(cut)
                raise UsageError("missing ARCHIVE: name the archive to unpack ('-' for stdin)")
        else:
            path = Path(self._archive)
            try:
                path.open("rb").close()
            except FileNotFoundError:
                raise EnvpackError(f"no such archive: {path}") from None
            except IsADirectoryError:
                # A pack written with --directory-only (or by pixi-pack): same checks.
                return path
            except OSError as exc:
                raise EnvpackError(f"cannot read {path}: {exc.strerror}") from None
            payload = selfextract.find_payload(path)
            if payload is None:
                cut = selfextract.truncation(path)
                if cut is not None:
                    raise ArchiveError(cut)
                self._file = path.open("rb")
                return self._file
        # Checked in full before anything is written: a cut or altered file is refused here.
        selfextract.verify(payload)
        self._file = selfextract.open_payload(payload)
        return self._file

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


def _print_sbom(source: BinaryIO | Path) -> None:
    from envpack.sbomread import read_sbom

    got = read_sbom(source)
    if got.generated:
        print(
            "note: this pixi-pack archive has no SBOM; this one was made from its repodata",
            file=sys.stderr,
        )
    # The bytes as verified, so the output's sha256 is the one the manifest lists.
    sys.stdout.buffer.write(got.data)
    sys.stdout.buffer.flush()


def _print_listing(doc: dict[str, Any], as_json: bool) -> None:
    artifacts = doc.pop("artifacts")
    if as_json:
        typer.echo(
            document(
                "list",
                platform=doc.pop("platform"),
                environment=doc.pop("environment"),
                artifacts=artifacts,
                verified=False,
                **doc,
            )
        )
        return
    where = f", environment {doc['environment']}" if doc.get("environment") else ""
    typer.echo(f"{doc.get('format')} archive for {doc.get('platform')}{where}")
    rows = [(_row_path(a), _mb(_size_of(a))) for a in artifacts]
    for line in columns(rows, right={1}):
        typer.echo(f"  {line}")
    total = sum(_size_of(a) for a in artifacts)
    needs = [v for v in doc.get("virtual_packages", []) if str(v).startswith("__glibc")]
    sbom = doc.get("sbom")
    typer.echo(
        f"{len(artifacts)} artifacts, {_mb(total)}"
        + (f"; needs {', '.join(needs)}" if needs else "")
        + (f"; SBOM {sbom['path']} (see --list --sbom)" if isinstance(sbom, dict) else "")
    )
    # --list trusts the manifest and reads nothing else: a cut archive still lists.
    typer.echo("not verified: run `envunpack --check` to check every hash", err=True)


def _row_path(artifact: object) -> str:
    return artifact.path if isinstance(artifact, Artifact) else str(dict(artifact)["path"])  # type: ignore[call-overload]


def _size_of(artifact: object) -> int:
    if isinstance(artifact, Artifact):
        return artifact.size or 0
    return int(dict(artifact).get("size") or 0)  # type: ignore[call-overload]


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def _print_check(checked: CheckResult, as_json: bool, quiet: bool) -> None:
    environment = checked.manifest.environment if checked.manifest else None
    if as_json:
        typer.echo(
            document(
                "check",
                platform=checked.platform,
                environment=environment,
                artifacts=checked.manifest.artifacts if checked.manifest else [],
                verified=True,
                packages=checked.packages,
                wheels=checked.wheels,
            )
        )
    elif not quiet:
        print(
            f"ok: {checked.packages} packages and {checked.wheels} wheels verified for "
            f"{checked.platform}; this machine can unpack it",
            file=sys.stderr,
        )


def _builtin_archive_note() -> tuple[str, str] | None:
    """For a self-extracting file's --help: its archive is built in, no ARCHIVE needed."""
    from envpack import selfextract

    program = selfextract.own_executable()
    try:
        payload = selfextract.find_payload(program)
    except EnvpackError:
        return None
    if payload is None or not getattr(sys, "frozen", False):
        return None
    prog = f"./{program.name}"
    note = (
        f"This file carries its archive built in ({payload.length / 1e6:.1f} MB): run "
        f"{prog} -o DIR to unpack it, or {prog} --check to verify it."
    )
    return note, prog


def main() -> None:
    builtin = _builtin_archive_note()
    note, prog = builtin if builtin is not None else (None, "envunpack")
    run_main(app, prog=prog, note=note)

"""`envunpack`: verify an archive and relink it into a working environment.

Typer only. Imports nothing that only packing needs, and loads rattler lazily so that
`--help` and `--version` of the frozen binary start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from envpack.buildinfo import version_line
from envpack.cliutil import exit_now, new_app, run
from envpack.errors import EnvpackError

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
            "'-' reads stdin. "
            "Omit it when this program is a self-extracting file."
        ),
    ] = None,
    output_directory: Annotated[
        Path,
        typer.Option("-o", "--output-directory", help="Where the env and its scripts go."),
    ] = Path(),
    env_name: Annotated[
        str, typer.Option("-e", "--env-name", help="Name of the env directory inside -o.")
    ] = "env",
    shell: Annotated[
        str,
        typer.Option(
            "-s", "--shell", help="Shell of the activation script: bash, zsh, fish, xonsh, …"
        ),
    ] = "bash",
    force: Annotated[bool, typer.Option(help="Replace an existing env of that name.")] = False,
    compile_pyc: Annotated[
        bool, typer.Option("--compile", help="Byte-compile .py files with the env's python.")
    ] = False,
    execute_link_scripts: Annotated[
        bool,
        typer.Option(help="Run the packages' post-link scripts (they run unsandboxed)."),
    ] = False,
    list_only: Annotated[
        bool, typer.Option("--list", help="Print the archive's manifest and touch nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only errors and warnings.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Say more.")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    """Unpack ARCHIVE into DIR/env and write DIR/activate.sh (and deactivate.sh).

    Before anything is written the archive is checked: its format version, its platform and
    glibc against this machine, and every package's sha256 as it streams. The env is built
    beside its final place and renamed when complete, so an interrupted run never leaves a
    half-built env. No Python is needed on this machine.

    Examples:

      envunpack env.tar -o /app        # then: . /app/activate.sh

      envunpack --list env.tar         # what is inside

      cat env.tar | envunpack - -o /app
    """
    from envpack.certs import ensure_ca_certificates

    ensure_ca_certificates()  # rattler panics without CA certificates, even offline
    from envpack import install
    from envpack.progress import Reporter, SilentReporter, TqdmReporter

    reporter: Reporter = SilentReporter() if quiet or as_json else TqdmReporter(verbose=verbose)
    with _ArchiveSource(archive) as source:
        if list_only:
            _print_listing(install.describe(install.read_manifest(source)), as_json)
            return
        options = install.UnpackOptions(
            output_dir=output_directory,
            env_name=env_name,
            shell=shell,
            force=force,
            compile=compile_pyc,
            execute_link_scripts=execute_link_scripts,
        )
        result = install.unpack(source, options, reporter)
    if as_json:
        doc = {
            "prefix": str(result.prefix),
            "scripts": [str(p) for p in result.scripts],
            "platform": result.platform,
            "packages": result.packages,
            "wheels": result.wheels,
        }
        typer.echo(json.dumps(doc, indent=2))
    elif not quiet:
        activate = result.scripts[0] if result.scripts else None
        print(
            f"unpacked {result.packages} packages into {result.prefix}"
            + (f"; activate with: . {activate}" if activate else ""),
            file=sys.stderr,
        )


class _ArchiveSource:
    """The archive to read: a file, stdin, a self-extracting file, or this very program."""

    def __init__(self, archive: str | None) -> None:
        self._archive = archive
        self._file: BinaryIO | None = None

    def __enter__(self) -> BinaryIO | Path:
        from envpack import selfextract

        if self._archive == "-":
            return sys.stdin.buffer
        if self._archive is None:
            payload = selfextract.find_payload(selfextract.own_executable())
            if payload is None and Path(DEFAULT_PACK).is_file():
                # pixi-unpack's default: the pack pixi-pack writes by default, here.
                self._file = Path(DEFAULT_PACK).open("rb")
                return self._file
            if payload is None:
                raise EnvpackError("missing ARCHIVE: name the archive to unpack ('-' for stdin)")
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
                self._file = path.open("rb")
                return self._file
        # Checked in full before anything is written: a cut or altered file is refused here.
        selfextract.verify(payload)
        self._file = selfextract.open_payload(payload)
        return self._file

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


def _print_listing(doc: dict[str, object], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(
        f"{doc.get('format')} archive for {doc.get('platform')}"
        + (f", environment {doc['environment']}" if "environment" in doc else "")
    )
    artifacts = doc.get("artifacts", [])
    assert isinstance(artifacts, list)
    for a in artifacts:
        size = a.get("size") or 0
        typer.echo(f"  {a['path']}  {size / 1e6:.2f} MB")
    typer.echo(f"{len(artifacts)} artifacts")


def main() -> None:
    exit_now(run(app, prog="envunpack"))

"""`envunpack`: verify an archive and relink it into a working environment.

Typer only. Imports nothing that only packing needs, and loads rattler lazily so that
`--help` and `--version` of the frozen binary start fast.
"""

from __future__ import annotations

import io
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from envpack.core.cliutil import (
    InsecureFlag,
    JsonFlag,
    QuietFlag,
    VerboseFlag,
    completion_option,
    new_app,
    version_option,
)
from envpack.core.cliutil import main as run_main
from envpack.core.errors import EnvpackError, UsageError
from envpack.core.jsonout import document
from envpack.core.ociref import is_oci
from envpack.target.buildinfo import version_line
from envpack.target.source import ArchiveSource
from envpack.target.unpackreport import print_check, print_listing, print_sbom

if TYPE_CHECKING:
    from envpack.target.ocipull import PullOptions

# The activation flavours; kept here as names so that --help needs no rattler import.
SHELL_NAMES = ("bash", "zsh", "sh", "fish", "xonsh", "powershell")


def activation_hint(script: Path, shell: str) -> str:
    """What to type to activate: `. /app/activate.sh`, or `source` for fish; quoted."""
    verb = "source" if shell == "fish" else "."
    return f"{verb} {shlex.quote(str(script))}"


app = new_app()


@app.command()
def main_command(
    archive: Annotated[
        str | None,
        typer.Argument(
            help="Archive made by envpack or pixi-pack (or one written as a folder); "
            "'-' reads stdin; oci://HOST/REPO:TAG pulls one pushed by `envpack -o oci://…`. "
            "Omit it when this program is a self-extracting file.",
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
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache",
            metavar="DIR",
            help="With oci://: keep fetched blobs in DIR, so the next version of the env "
            "fetches only the blobs that changed. [default: a temp dir, removed after]",
        ),
    ] = None,
    prune_cache: Annotated[
        bool,
        typer.Option(
            "--prune-cache",
            help="With --cache: after a good unpack, remove the cached blobs this env does "
            "not use, so the cache holds one version. Not for a cache other envs share.",
        ),
    ] = False,
    insecure: InsecureFlag = False,
    as_json: JsonFlag = False,
    quiet: QuietFlag = False,
    verbose: VerboseFlag = False,
    version: Annotated[bool | None, version_option(version_line)] = None,
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

      envunpack oci://registry.example.com/team/env:v2 --cache ~/.cache/envunpack -o /app
    """
    if list_only and check_only:
        raise UsageError("--list and --check exclude each other; --check also lists with --json")
    if sbom and not list_only:
        raise UsageError(
            "--sbom only works with --list; an unpacked env gets its SBOM beside activate.sh"
        )
    if remove_app is not None:  # --envpack-uninstall of an app file
        from envpack.target.appinstall import remove_app as remove

        remove(remove_app)
        print(f"removed {remove_app}", file=sys.stderr)
        return
    from envpack.target.certs import ensure_ca_certificates

    ensure_ca_certificates()  # rattler panics without CA certificates, even offline
    from envpack.core.progress import Reporter, SilentReporter, TqdmReporter
    from envpack.target import unpack

    reporter: Reporter = SilentReporter() if quiet or as_json else TqdmReporter(verbose=verbose)
    if (cache is not None or insecure) and not is_oci(archive):
        raise UsageError("--cache and --insecure are for oci:// references only")
    if prune_cache and (cache is None or list_only or check_only):
        raise UsageError("--prune-cache needs --cache DIR and an unpack (not --list or --check)")
    # --list needs only envpack.json; --list --sbom reads the SBOM through the whole pack.
    manifest_only = list_only and not sbom
    pull: PullOptions | None = None
    if is_oci(archive):  # the registry client only for oci://
        from envpack.target.ocipull import PullOptions

        pull = PullOptions(cache, insecure, manifest_only, prune_cache)
    options = unpack.UnpackOptions(
        output_dir=output_directory,
        env_name=env_name,
        shell=shell,
        force=force,
        compile=compile_pyc,
        execute_link_scripts=execute_link_scripts,
    )
    if pull is not None and not (list_only or check_only or sbom):
        # Before a blob is fetched; its warnings are said once, by unpack() below.
        unpack.check_destination(options, SilentReporter(io.StringIO()))
    with ArchiveSource(archive, pull, reporter) as source:
        if sbom:
            print_sbom(source)
            return
        if list_only:
            print_listing(unpack.describe(unpack.read_manifest(source)), as_json)
            return
        if check_only:
            checked = unpack.check(source, reporter)
            print_check(checked, as_json, quiet)
            return
        result = unpack.unpack(source, options, reporter)
    if app:
        from envpack.target.appinstall import write_app_env

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


def _builtin_archive_note() -> tuple[str, str] | None:
    """For a self-extracting file's --help: its archive is built in, no ARCHIVE needed."""
    from envpack.core import selfextract
    from envpack.target.runtime import is_frozen, own_executable

    program = own_executable()
    try:
        payload = selfextract.find_payload(program)
    except EnvpackError:
        return None
    if payload is None or not is_frozen():
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

"""`envpack`: pack one environment of a pixi.lock into a verified, reproducible archive.

Typer only: parse, build PackOptions, call `envpack.packer.pack`, print the outcome.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from envpack import __version__
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
from envpack.core.errors import EnvpackError
from envpack.core.progress import Reporter, SilentReporter, TqdmReporter
from envpack.packer import netopts, ociopts
from envpack.packer.archivewrite import DEFAULT_LEVEL, Compression
from envpack.packer.cachedir import DEFAULT_HELP

app = new_app()


@app.command()
def main_command(
    manifest: Annotated[
        Path,
        typer.Argument(
            help="pixi.lock, the pixi.toml or pyproject.toml beside it, or their directory.",
            show_default=False,
        ),
    ] = Path(),
    environment: Annotated[
        str, typer.Option("-e", "--environment", help="Environment of the lock to pack.")
    ] = "default",
    platform: Annotated[
        str | None,
        typer.Option(
            "-p", "--platform", help="Target platform, e.g. linux-aarch64 [default: host]"
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            "--output-file",
            metavar="FILE",
            help="Archive to write; '-' writes to stdout; oci://HOST/REPO:TAG pushes it to a "
            "registry, a blob per package. An existing file needs --force. "
            "[default: environment.tar; environment.sh with --create-executable; "
            "environment with --directory-only; sbom.cdx.json with --sbom-only]",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace an existing output file (never an input)."),
    ] = False,
    compression: Annotated[
        Compression,
        typer.Option(help="zstd (default) or none: a plain tar that pixi-unpack also reads."),
    ] = "zstd",
    level: Annotated[
        int,
        typer.Option(
            min=1,
            max=22,
            help="zstd level, 1 (fast) to 22, for what compresses; big members zstd cannot "
            "shrink (.conda, wheels) get its fastest level.",
        ),
    ] = DEFAULT_LEVEL,
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache",
            "--use-cache",
            metavar="DIR",
            help=f"Download cache; every hit is verified again. [default: {DEFAULT_HELP}]",
        ),
    ] = None,
    concurrency: netopts.ConcurrencyOption = None,
    config: netopts.ConfigOption = None,
    mirror: netopts.MirrorOption = None,
    auth_file: netopts.AuthFileOption = None,
    inject: Annotated[
        list[Path] | None,
        typer.Option(
            "-i",
            "--inject",
            metavar="FILE",
            help="Add a local .conda, .tar.bz2 or .whl file (repeatable).",
        ),
    ] = None,
    retries: netopts.RetriesOption = 5,
    timeout: netopts.TimeoutOption = 30.0,
    ignore_pypi_non_wheel: Annotated[
        bool,
        typer.Option(
            "--ignore-pypi-non-wheel", help="Skip PyPI sdists and VCS sources with a warning."
        ),
    ] = False,
    create_executable: Annotated[
        bool,
        typer.Option(
            "--create-executable",
            help="Write one executable file: the static envunpack for the target platform "
            "with the archive appended. Run it on the target as ./environment.sh -o /app.",
        ),
    ] = False,
    entrypoint: Annotated[
        str | None,
        typer.Option(
            "--entrypoint",
            metavar="COMMAND",
            help="With --create-executable: make an app file that installs itself on first "
            "run and then runs COMMAND (a command of the env's bin/, or 'python -m MODULE') "
            "with its arguments. With --oci-image: the image's ENTRYPOINT (shell words).",
        ),
    ] = None,
    oci_image: ociopts.OciImageFlag = False,
    dest_prefix: ociopts.DestPrefixOption = ociopts.DEFAULT_DEST,
    base: ociopts.BaseOption = None,
    cmd: ociopts.CmdOption = None,
    mount_from: ociopts.MountFromOption = None,
    unpacker: Annotated[
        Path | None,
        typer.Option(
            "--unpacker",
            "--pixi-unpack-source",
            metavar="FILE",
            help="The static envunpack to embed. [default: envunpack-ARCH-linux from "
            "$ENVPACK_UNPACKER_DIR or ./dist]",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be packed, download nothing.")
    ] = False,
    sbom_only: Annotated[
        bool,
        typer.Option(
            "--sbom-only",
            help="Write only the CycloneDX SBOM of what would be packed, from the lock's "
            "hashes; no package is downloaded.",
        ),
    ] = False,
    as_json: JsonFlag = False,
    quiet: QuietFlag = False,
    verbose: VerboseFlag = False,
    version: Annotated[bool | None, version_option(lambda: f"envpack {__version__}")] = None,
    prefix: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Pack this installed environment (conda-meta/ is read) instead of a lock. "
            "Package files come from package caches (--use-cache, conda/mamba/pixi's) or "
            "are downloaded again.",
        ),
    ] = None,
    ignore_pip_installed: Annotated[
        bool,
        typer.Option(
            "--ignore-pip-installed",
            help="With --prefix: leave out pip-installed packages, with a warning.",
        ),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse editable and path source dependencies in the lock instead of "
            "skipping them with a warning.",
        ),
    ] = False,
    directory_only: Annotated[
        bool,
        typer.Option(
            "--directory-only",
            help="Write the archive's contents as a folder (default name: environment), "
            "e.g. for rsync; `envunpack FOLDER` unpacks it with the same checks.",
        ),
    ] = False,
    insecure: InsecureFlag = False,
    completion: Annotated[str | None, completion_option("envpack")] = None,
) -> None:
    """Pack one environment of a pixi.lock, for one platform, into a single archive.

    Every conda package and wheel is downloaded (in parallel, retried, cached), checked against
    the lock's hashes, and written with a manifest into a reproducible tar, zstd-compressed by
    default. On the target, `envunpack ARCHIVE -o DIR` turns it into a working environment.

    Examples:

      envpack -o env.tar                      # this project, host platform

      envpack -p linux-aarch64 -o env-arm.tar # another platform

      envpack --dry-run --json                # what would be packed

      envpack --sbom-only -o sbom.json        # its SBOM, without downloading

      envpack --oci-image -o app.oci.tar      # a runnable image (see --base)

      envpack -o oci://HOST/team/env:v1       # push it to a registry
    """
    # Imported here, not at the top: `--help` and `--version` should not pay for them.
    from envpack.packer.fetch import FetchOptions
    from envpack.packer.netconfig import NetworkOptions, load_config, parse_mirror
    from envpack.packer.pack import PackOptions, pack
    from envpack.packer.packreport import print_plan, print_result, write_sbom_only

    reporter: Reporter = SilentReporter() if quiet or as_json else TqdmReporter(verbose=verbose)
    network = NetworkOptions(
        config_files=tuple(config or ()),
        project_dir=manifest if manifest.is_dir() else manifest.parent,
        auth_file=auth_file,
        mirrors=tuple(parse_mirror(m) for m in mirror or []),
    )
    if output is None:
        output = ociopts.default_output(sbom_only, create_executable, directory_only)
    options = PackOptions(
        manifest_path=manifest,
        output=None if output == "-" or output.startswith("oci://") else Path(output),
        registry=output if output.startswith("oci://") else None,
        insecure=insecure,
        mount_from=ociopts.mount_sources(mount_from, output),
        force=force,
        environment=environment,
        platform=platform,
        compression=compression,
        level=level,
        cache_dir=cache,
        network=network,
        inject=tuple(inject or ()),
        ignore_pypi_non_wheel=ignore_pypi_non_wheel,
        fetch=FetchOptions(concurrency=concurrency, attempts=retries, timeout=timeout),
        create_executable=create_executable,
        unpacker=unpacker,
        entrypoint=entrypoint,
        prefix=prefix,
        ignore_pip_installed=ignore_pip_installed,
        package_caches=(cache,) if cache is not None else (),
        strict=strict,
        directory_only=directory_only,
    )
    if dry_run:
        load_config(network)  # a broken config.toml is worth one line even in a dry run
        print_plan(options, reporter, as_json)
        return
    if oci_image and not sbom_only:
        return ociopts.pack_image(
            options, reporter, dest_prefix, base, cmd, quiet=quiet, as_json=as_json
        )
    ociopts.check_not_image(dest_prefix, base, cmd)
    if sbom_only:
        return write_sbom_only(options, reporter, quiet, create_executable, oci_image)
    if options.output is None and options.registry is None and sys.stdout.isatty():
        raise EnvpackError("refusing to write an archive to a terminal; redirect stdout")
    result = pack(options, reporter)
    print_result(result, as_json, quiet)


def main() -> None:
    run_main(app, prog="envpack")

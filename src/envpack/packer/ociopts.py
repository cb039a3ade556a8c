"""`envpack --oci-image` options: their typer spelling, and turning them into ImageOptions.

Kept out of cli.py (one module, one job; cli.py stays a list of options and one call).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated

import typer

from envpack.core.errors import UsageError
from envpack.core.layout import SBOM_NAME
from envpack.core.ociref import is_oci, parse_ref
from envpack.core.progress import Reporter

if TYPE_CHECKING:
    from envpack.packer.pack import PackOptions

OciImageFlag = Annotated[
    bool,
    typer.Option(
        "--oci-image",
        help="Write a runnable OCI image archive (for skopeo, podman, docker via skopeo) with "
        "the env installed at --dest-prefix, one layer per package. No daemon needed.",
    ),
]
DEFAULT_DEST = "/app/env"
DestPrefixOption = Annotated[
    str,
    typer.Option("--dest-prefix", metavar="PATH", help="With --oci-image: the env's path in it."),
]
BaseOption = Annotated[
    str | None,
    typer.Option(
        "--base",
        metavar="REF",
        help="With --oci-image: the base image, an OCI archive (oci-archive tar), an OCI "
        "layout directory or oci://HOST/REPO:TAG in a registry; it must have a glibc for "
        "conda packages. [default: scratch]",
    ),
]
CmdOption = Annotated[
    str | None,
    typer.Option(
        "--cmd",
        metavar="COMMAND",
        help="With --oci-image: the image's CMD (shell words). --entrypoint sets its "
        "ENTRYPOINT. [default: the base's, else the env's python]",
    ),
]


MountFromOption = Annotated[
    list[str] | None,
    typer.Option(
        "--mount-from",
        metavar="REPO",
        help="With -o oci://: a repository of the same registry (REPO or oci://HOST/REPO) "
        "that may hold some blobs already; they are mounted from it, not uploaded. Repeatable.",
    ),
]


def mount_sources(mount_from: list[str] | None, output: str | None) -> tuple[str, ...]:
    """--mount-from's repositories, checked: each on the registry `output` pushes to."""
    if not mount_from:
        return ()
    if output is None or not is_oci(output):
        raise UsageError("--mount-from is for -o oci://… only: it mounts blobs within a registry")
    target = parse_ref(output)
    repositories = []
    for given in mount_from:
        ref = parse_ref(given if is_oci(given) else f"oci://{target.host}/{given}")
        if ref.host != target.host:
            raise UsageError(
                f"--mount-from {given}: on {ref.host}, not on {target.host} where -o pushes; "
                "a registry mounts only its own blobs (drop the host, or push there)"
            )
        if ref.digest or ":" in given.rsplit("/", 1)[-1]:
            raise UsageError(f"--mount-from {given}: name a repository, without a tag or digest")
        repositories.append(ref.repository)
    return tuple(repositories)


def default_output(sbom_only: bool, create_executable: bool, directory_only: bool) -> str:
    """pixi-pack's defaults, and ours for the SBOM."""
    if sbom_only:
        return SBOM_NAME
    if directory_only:
        return "environment"
    return "environment.sh" if create_executable else "environment.tar"


def pack_image(
    options: PackOptions,
    reporter: Reporter,
    dest_prefix: str,
    base: str | None,
    cmd: str | None,
    *,
    quiet: bool,
    as_json: bool,
) -> None:
    """`--oci-image`: the pack options' --entrypoint names the image's ENTRYPOINT instead."""
    from envpack.packer.ociimage import ImageOptions
    from envpack.packer.ociship import ship_image

    image = ImageOptions(
        dest_prefix=PurePosixPath(dest_prefix),
        entrypoint=_words("--entrypoint", options.entrypoint),
        cmd=_words("--cmd", cmd),
    )
    shipped = ship_image(replace(options, entrypoint=None), image, base, reporter)
    result = shipped.image
    if as_json:
        from envpack.packer.packreport import print_result

        print_result(result.pack, as_json=True, quiet=quiet)
    elif not quiet:
        pushed = result.pack.pushed
        where = (
            f"pushed {pushed.ref}@sha256:{result.pack.sha256}"
            if pushed
            else (f"wrote {result.pack.output}")
        )
        print(
            f"{where}: OCI image, {result.layers} env layers on {result.base_layers} base "
            f"layers, {result.pack.size / 1e6:.1f} MB"
            + (f"; its SBOM is the referrer {shipped.referrer}" if shipped.referrer else ""),
            file=sys.stderr,
        )


def check_not_image(dest_prefix: str, base: str | None, cmd: str | None) -> None:
    """The image's own options mean nothing without --oci-image."""
    given = [name for name, value in (("--base", base), ("--cmd", cmd)) if value is not None]
    if dest_prefix != DEFAULT_DEST:
        given.insert(0, "--dest-prefix")
    if given:
        raise UsageError(f"{given[0]} only makes sense with --oci-image")


def _words(option: str, text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r}: {exc}") from None
    if not words:
        raise UsageError(f"{option} is empty: give a command")
    return tuple(words)

"""What `envpack` prints: the plan of a dry run and the result of a pack, as text or JSON;
and `--sbom-only`, which writes the SBOM alone."""

from __future__ import annotations

import sys

import typer

from envpack.core.errors import UsageError
from envpack.core.jsonout import document
from envpack.core.progress import Reporter
from envpack.core.textout import columns
from envpack.packer.output import atomic_output, check_output
from envpack.packer.pack import PackOptions, PackResult, make_plan, pack_inputs
from envpack.packer.packcontents import subject
from envpack.packer.sbomitems import plan_items
from envpack.packer.sbommemo import sbom_for


def print_plan(options: PackOptions, reporter: Reporter, as_json: bool) -> None:
    plan = make_plan(options, reporter)
    rows = [d.artifact for d in plan.downloads]
    if as_json:
        typer.echo(
            document(
                "plan",
                platform=plan.platform,
                environment=plan.environment,
                artifacts=rows,
                virtual_packages=list(plan.virtual_packages),
            )
        )
        return
    table = [(a.name, a.version, a.build, _size(a.size), a.kind) for a in rows]
    for line in columns(table, right={3}):
        typer.echo(line)
    typer.echo(
        f"{len(rows)} artifacts, {_size(plan.total_size)} for {plan.environment} on "
        f"{plan.platform}"
        + (f", needs {', '.join(plan.virtual_packages)}" if plan.virtual_packages else "")
    )


def _size(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.2f} MB"


def print_result(result: PackResult, as_json: bool, quiet: bool) -> None:
    pushed = result.pushed
    where = str(result.output) if result.output else str(pushed.ref) if pushed else "stdout"
    if as_json:
        doc = document(
            "pack",
            platform=result.manifest.platform,
            environment=result.manifest.environment,
            artifacts=result.manifest.artifacts,
            output=where,
            sha256=result.sha256,
            size=result.size,
        )
        print(doc, file=sys.stderr if result.output is None and not pushed else sys.stdout)
    elif not quiet and pushed is not None:
        sent = pushed.traffic
        mounted = f", {sent.blobs_mounted} mounted" if sent.blobs_mounted else ""
        print(
            f"pushed {len(result.manifest.artifacts)} artifacts to {where}@sha256:{result.sha256} "
            f"({sent.blobs_uploaded} blobs sent, {sent.uploaded / 1e6:.1f} MB; "
            f"{sent.blobs_present} already there{mounted})",
            file=sys.stderr,
        )
    elif not quiet:
        print(
            f"packed {len(result.manifest.artifacts)} artifacts into {where} "
            f"({result.size / 1e6:.1f} MB, sha256 {result.sha256})",
            file=sys.stderr,
        )


def write_sbom_only(
    options: PackOptions, reporter: Reporter, quiet: bool, create_executable: bool, image: bool
) -> None:
    """`--sbom-only`: the SBOM of what would be packed, and one line saying where it went."""

    if create_executable or image:
        drop = "--create-executable" if create_executable else "--oci-image"
        raise UsageError(f"--sbom-only writes no archive: drop {drop}")
    data = write_sbom(options, reporter)
    if not quiet and options.output is not None:
        print(f"wrote the SBOM to {options.output} ({len(data)} bytes)", file=sys.stderr)


def write_sbom(options: PackOptions, reporter: Reporter) -> bytes:
    """`--sbom-only`: the SBOM of what would be packed, from the lock's hashes; nothing is
    downloaded. With every hash in the lock it equals the archive's own sbom.cdx.json."""
    if options.registry is not None:
        raise UsageError("--sbom-only writes a file: give -o FILE, not a registry")
    plan = make_plan(options, reporter)
    check_output(options.output, pack_inputs(options, None), force=options.force)
    unhashed = [d.artifact.label for d in plan.downloads if not d.artifact.sha256]
    if unhashed:
        reporter.warn(
            f"{len(unhashed)} artifacts have no sha256 in the lock and are listed without one "
            f"(e.g. {unhashed[0]}); a packed archive's SBOM has the hash of what it ships"
        )
    sbom = sbom_for(plan_items(plan), subject(plan), None)
    with atomic_output(options.output) as out:
        out.write(sbom)
        out.flush()
    return sbom

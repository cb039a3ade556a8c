"""What `envunpack` prints for --list, --list --sbom and --check, as text or JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import typer

from envpack.core.jsonout import document
from envpack.core.models import Artifact
from envpack.core.textout import columns

if TYPE_CHECKING:
    from envpack.target.unpack import CheckResult


def print_sbom(source: BinaryIO | Path) -> None:
    from envpack.target.sbomread import read_sbom

    got = read_sbom(source)
    if got.generated:
        print(
            "note: this pixi-pack archive has no SBOM; this one was made from its repodata",
            file=sys.stderr,
        )
    # The bytes as verified, so the output's sha256 is the one the manifest lists.
    sys.stdout.buffer.write(got.data)
    sys.stdout.buffer.flush()


def print_listing(doc: dict[str, Any], as_json: bool) -> None:
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


def print_check(checked: CheckResult, as_json: bool, quiet: bool) -> None:
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

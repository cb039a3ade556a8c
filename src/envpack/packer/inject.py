"""`--inject`: local .conda, .tar.bz2 and .whl files added to a plan, their depends checked."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import rattler

from envpack.core.errors import EnvpackError, cause_text
from envpack.core.models import Download, Plan
from envpack.core.progress import Reporter
from envpack.packer.lockfile import conda_download
from envpack.packer.wheelcheck import injected_wheel


def injected(path: Path) -> Download:
    """The download of one local file; its record comes from the file, so do its hashes."""
    if not path.is_file():
        raise EnvpackError(f"--inject {path}: no such file")
    name = path.name
    if name.endswith(".whl"):
        download = injected_wheel(path)
    elif name.endswith((".conda", ".tar.bz2")):
        try:
            record = asyncio.run(rattler.RepoDataRecord.from_package_archive(path))
        except Exception as exc:  # noqa: BLE001 - rattler raises assorted types for bad archives
            raise EnvpackError(
                f"--inject {path}: not a valid conda package ({cause_text(exc)})"
            ) from None
        download = conda_download(record, url=path.resolve().as_uri(), filename=name)
    else:
        raise EnvpackError(f"--inject {path}: expected a .conda, .tar.bz2 or .whl file")
    return replace(download, injected=True)  # the SBOM says so


def inject(plan: Plan, added: list[Download], reporter: Reporter) -> Plan:
    """The plan with `added` in place of same-named entries of the lock."""
    names = {(d.artifact.kind, d.artifact.name) for d in added}
    kept = [d for d in plan.downloads if (d.artifact.kind, d.artifact.name) not in names]
    for replaced in set(plan.downloads) - set(kept):
        reporter.warn(f"--inject replaces {replaced.artifact.label} from the lock")
    downloads = sorted([*kept, *added], key=lambda d: d.artifact.path)
    _check_depends(added, [d for d in downloads if d.artifact.kind == "conda"])
    return replace(plan, downloads=tuple(downloads))


def _check_depends(added: list[Download], conda: list[Download]) -> None:
    records = [_package_record(d) for d in conda]
    missing: list[str] = []
    for download in added:
        for dep in download.record.get("depends", []):  # type: ignore[attr-defined]
            if str(dep).startswith("__"):
                continue  # virtual packages are the target's business, checked at unpack
            spec = rattler.MatchSpec(str(dep))
            if not any(spec.matches(r) for r in records):
                missing.append(f"{download.artifact.name} needs '{dep}'")
    if missing:
        raise EnvpackError(
            "injected packages have unmet dependencies: "
            + "; ".join(missing)
            + " (inject those too, or add them to the lock)"
        )


def _package_record(download: Download) -> rattler.PackageRecord:
    fields = download.record
    depends = fields.get("depends", [])
    return rattler.PackageRecord(
        name=download.artifact.name,
        version=download.artifact.version,
        build=rattler.BuildString.new_unchecked(download.artifact.build),
        build_number=int(fields.get("build_number", 0)),  # type: ignore[call-overload]
        subdir=download.artifact.subdir,
        depends=[str(d) for d in depends] if isinstance(depends, list) else [],
    )

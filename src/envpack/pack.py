"""Packing, step by step: plan → inject → fetch → write the archive atomically."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import rattler
from rattler.networking import Client

from envpack import __version__
from envpack.archive import DEFAULT_LEVEL, ArchiveWriter, Compression, Writable
from envpack.cachedir import default_cache_dir, ensure_cache_dir
from envpack.errors import EnvpackError, LockError, UsageError, cause_text, output_error
from envpack.fetch import Cache, Fetched, Fetcher, FetchOptions
from envpack.lockfile import conda_download, find_lock, plan_lock
from envpack.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    PIXI_PACK_NAME,
    manifest_to_json,
    pixi_pack_json,
)
from envpack.models import CHANNEL_DIR, Download, Manifest, Plan
from envpack.netconfig import (
    NetworkOptions,
    download_concurrency,
    load_config,
    local_mirror,
    make_client,
)
from envpack.output import HashingWriter, atomic_output, check_output
from envpack.progress import Bar, Reporter
from envpack.selfextract import TRAILER_SIZE, find_unpacker, head, trailer
from envpack.wheelcheck import check_plan_wheels, injected_wheel

ENVIRONMENT_YML = "environment.yml"


@dataclass(frozen=True)
class PackOptions:
    manifest_path: Path
    output: Path | None  # None writes to stdout
    environment: str = "default"
    platform: str = field(default_factory=lambda: str(rattler.Subdir.current()))
    compression: Compression = "zstd"
    level: int = DEFAULT_LEVEL
    cache_dir: Path | None = None  # None: default_cache_dir()
    network: NetworkOptions = field(default_factory=NetworkOptions)
    inject: Sequence[Path] = ()
    ignore_pypi_non_wheel: bool = False
    fetch: FetchOptions = field(default_factory=FetchOptions)
    create_executable: bool = False
    unpacker: Path | None = None
    force: bool = False  # replace an existing output file (never an input)


@dataclass(frozen=True)
class PackResult:
    output: Path | None
    manifest: Manifest
    sha256: str
    size: int


def make_plan(options: PackOptions, reporter: Reporter) -> Plan:
    """Read the lock, add injected packages, and check the result is shippable."""
    lock = find_lock(options.manifest_path)
    plan, warnings = plan_lock(
        lock,
        options.environment,
        options.platform,
        ignore_pypi_non_wheel=options.ignore_pypi_non_wheel,
    )
    for warning in warnings:
        reporter.warn(warning)
    if options.inject:
        plan = _inject(plan, [_injected(p) for p in options.inject], reporter)
    _check_subdirs(plan)
    check_plan_wheels(plan)
    return plan


def pack(options: PackOptions, reporter: Reporter, client: Client | None = None) -> PackResult:
    plan = make_plan(options, reporter)
    unpacker = _unpacker(options)
    check_output(options.output, _inputs(options, unpacker), force=options.force)
    # Every check that can fail before a download does: the cache, then the output file.
    cache = ensure_cache_dir(options.cache_dir or default_cache_dir())
    config = load_config(options.network)
    fetch = options.fetch
    if fetch.concurrency is None:
        fetch = replace(fetch, concurrency=download_concurrency(config))
    fetcher = Fetcher(Cache(cache), client or make_client(config), reporter, fetch)
    mirrors = config.mirrors
    mirrored = [replace(d, url=local_mirror(d.url, mirrors)) for d in plan.downloads]
    with atomic_output(options.output, executable=unpacker is not None) as out:
        reporter.info(f"fetching {len(mirrored)} artifacts ({_mb(plan.total_size)})")
        try:
            fetched = fetcher.fetch_all(mirrored)
        except OSError as exc:  # the fetcher's own reads and writes are of the cache
            raise output_error(cache, exc, "writing the download cache") from None
        manifest = _manifest(plan, fetched)
        reporter.info(f"writing {options.output or 'stdout'} ({options.compression})")
        offset = 0
        if unpacker is not None:
            head_at = _copy_into(unpacker, out)
            out.write(head(bytes(32), 0, 0))
            offset = head_at + TRAILER_SIZE
        payload = HashingWriter(out)
        bar = reporter.bar("write", sum(f.size for f in fetched), "B")
        try:
            _write_archive(payload, plan, fetched, manifest, options, bar)
        finally:
            bar.close()
        if unpacker is not None:
            out.write(trailer(payload.digest(), offset, payload.size))
            out.patch(head_at, head(payload.digest(), offset, payload.size))
        out.flush()
        digest = out.hexdigest()
    return PackResult(options.output, manifest, digest, out.size)


def _inputs(options: PackOptions, unpacker: Path | None) -> list[tuple[str, Path]]:
    """Every file a pack reads, so that no spelling of -o can overwrite one of them."""
    found: list[tuple[str, Path]] = []
    with contextlib.suppress(EnvpackError):
        found.append(("the lock", find_lock(options.manifest_path)))
    if options.manifest_path.is_file():
        found.append(("the manifest", options.manifest_path))
    found += [("an --inject file", p) for p in options.inject]
    if unpacker is not None:
        found.append(("the --unpacker", unpacker))
    return found


def _unpacker(options: PackOptions) -> Path | None:
    if not options.create_executable:
        if options.unpacker is not None:
            raise UsageError("--unpacker only makes sense with --create-executable")
        return None
    search = [Path(p) for p in os.environ.get("ENVPACK_UNPACKER_DIR", "").split(":") if p]
    # From a source checkout, scripts/build-unpacker's output sits in dist/ at the root.
    search += [Path(__file__).resolve().parents[2] / "dist", Path.cwd() / "dist"]
    return find_unpacker(options.platform, options.unpacker, search)


def _copy_into(source: Path, out: Writable) -> int:
    with source.open("rb") as fh:
        shutil.copyfileobj(fh, out, 1 << 20)
    return source.stat().st_size


# --- injected packages -------------------------------------------------------------------------


def _injected(path: Path) -> Download:
    if not path.is_file():
        raise EnvpackError(f"--inject {path}: no such file")
    name = path.name
    if name.endswith(".whl"):
        return injected_wheel(path)
    if not (name.endswith(".conda") or name.endswith(".tar.bz2")):
        raise EnvpackError(f"--inject {path}: expected a .conda, .tar.bz2 or .whl file")
    try:
        record = asyncio.run(rattler.RepoDataRecord.from_package_archive(path))
    except Exception as exc:  # noqa: BLE001 - rattler raises assorted types for bad archives
        raise EnvpackError(
            f"--inject {path}: not a valid conda package ({cause_text(exc)})"
        ) from None
    # Records of injected files come from their own index.json; hashes are of the file itself.
    return conda_download(record, url=path.resolve().as_uri(), filename=name)


def _inject(plan: Plan, injected: list[Download], reporter: Reporter) -> Plan:
    names = {(d.artifact.kind, d.artifact.name) for d in injected}
    kept = [d for d in plan.downloads if (d.artifact.kind, d.artifact.name) not in names]
    for replaced in set(plan.downloads) - set(kept):
        reporter.warn(f"--inject replaces {replaced.artifact.label} from the lock")
    downloads = sorted([*kept, *injected], key=lambda d: d.artifact.path)
    _check_depends(injected, [d for d in downloads if d.artifact.kind == "conda"])
    return replace(plan, downloads=tuple(downloads))


def _check_depends(injected: list[Download], conda: list[Download]) -> None:
    records = [_package_record(d) for d in conda]
    missing: list[str] = []
    for download in injected:
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


def _check_subdirs(plan: Plan) -> None:
    allowed = {"noarch", plan.platform}
    wrong = [
        d.artifact.label
        for d in plan.downloads
        if d.artifact.kind == "conda" and d.artifact.subdir not in allowed
    ]
    if wrong:
        raise LockError(
            f"packages for another platform than {plan.platform}: {', '.join(wrong)}; "
            "check the lock or the injected files"
        )


# --- the archive -------------------------------------------------------------------------------


def _manifest(plan: Plan, fetched: list[Fetched]) -> Manifest:
    artifacts = tuple(
        replace(f.artifact, sha256=f.sha256, size=f.size)
        for f in sorted(fetched, key=lambda f: f.artifact.path)
    )
    return Manifest(
        format_version=FORMAT_VERSION,
        envpack_version=__version__,
        platform=plan.platform,
        environment=plan.environment,
        lock_sha256=plan.lock_sha256,
        virtual_packages=plan.virtual_packages,
        artifacts=artifacts,
    )


def repodata(plan: Plan, fetched: list[Fetched]) -> dict[str, bytes]:
    """`channel/<subdir>/repodata.json` from the lock's records, so repodata patches survive."""
    by_path = {f.artifact.path: f for f in fetched}
    subdirs: dict[str, dict[str, dict[str, object]]] = {"noarch": {}, plan.platform: {}}
    for download in plan.downloads:
        if download.artifact.kind != "conda":
            continue
        got = by_path[download.artifact.path]
        record = dict(download.record)
        record.update(sha256=got.sha256, size=got.size)
        if download.artifact.md5:
            record["md5"] = download.artifact.md5
        subdirs[download.artifact.subdir][download.artifact.filename] = record
    out: dict[str, bytes] = {}
    for subdir, records in subdirs.items():
        doc = {
            "info": {"subdir": subdir},
            "packages": {k: v for k, v in records.items() if k.endswith(".tar.bz2")},
            "packages.conda": {k: v for k, v in records.items() if k.endswith(".conda")},
            "removed": [],
            "repodata_version": 1,
        }
        out[f"{CHANNEL_DIR}/{subdir}/repodata.json"] = json.dumps(doc, sort_keys=True).encode()
    return out


def environment_yml(plan: Plan) -> bytes:
    """Lets conda or micromamba install the unpacked archive without envpack."""
    lines = ["channels:", "  - ./channel", "  - nodefaults", "dependencies:"]
    wheels = []
    for d in plan.downloads:
        a = d.artifact
        if a.kind == "conda":
            lines.append(f"  - {a.name}={a.version}={a.build}")
        else:
            wheels.append(f"      - ./{a.path}")
    if wheels:
        lines += ["  - pip:", *wheels]
    return ("\n".join(lines) + "\n").encode()


def _write_archive(
    out: Writable,
    plan: Plan,
    fetched: list[Fetched],
    manifest: Manifest,
    options: PackOptions,
    bar: Bar,
) -> None:
    with ArchiveWriter(out, options.compression, options.level) as writer:
        # The manifest first, so a reader can refuse the archive before writing anything.
        writer.add_bytes(MANIFEST_NAME, manifest_to_json(manifest))
        writer.add_bytes(PIXI_PACK_NAME, pixi_pack_json(plan.platform))
        writer.add_bytes(ENVIRONMENT_YML, environment_yml(plan))
        for name, data in sorted(repodata(plan, fetched).items()):
            writer.add_bytes(name, data)
        for item in sorted(fetched, key=lambda f: f.artifact.path):
            writer.add_file(item.artifact.path, item.path)
            bar.update(item.size)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"

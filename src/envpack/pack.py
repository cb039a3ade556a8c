"""Packing, step by step: plan → inject → fetch → write the archive atomically."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import rattler
import urllib3
from packaging.utils import canonicalize_name

from envpack import __version__
from envpack.archive import DEFAULT_LEVEL, ArchiveWriter, Compression
from envpack.errors import EnvpackError, LockError, OutputError, output_error
from envpack.fetch import Cache, Credentials, Fetched, Fetcher, FetchOptions, default_http
from envpack.lockfile import conda_download, find_lock, plan_lock
from envpack.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    PIXI_PACK_NAME,
    manifest_to_json,
    pixi_pack_json,
)
from envpack.models import CHANNEL_DIR, Download, Manifest, Plan
from envpack.packdir import DirectoryWriter, atomic_directory, check_directory_output
from envpack.pkgcache import channel_layout, default_caches, find_cached
from envpack.prefix import plan_prefix
from envpack.progress import Reporter
from envpack.selfextract import find_unpacker, trailer
from envpack.urls import apply_mirrors
from envpack.wheelcheck import check_plan_wheels, injected_wheel

ENVIRONMENT_YML = "environment.yml"


@dataclass(frozen=True)
class PackOptions:
    manifest_path: Path
    output: Path | None  # None writes to stdout
    environment: str = "default"
    # None: the host's for a lock, the prefix's own for --prefix.
    platform: str | None = None
    compression: Compression = "zstd"
    level: int = DEFAULT_LEVEL
    cache_dir: Path = Path(".envpack-cache")
    mirrors: Mapping[str, str] = field(default_factory=dict)
    auth_file: Path | None = None
    inject: Sequence[Path] = ()
    ignore_pypi_non_wheel: bool = False
    fetch: FetchOptions = field(default_factory=FetchOptions)
    create_executable: bool = False
    unpacker: Path | None = None
    prefix: Path | None = None  # pack this installed environment instead of a lock
    ignore_pip_installed: bool = False
    package_caches: Sequence[Path] = ()  # searched for a prefix's package files first
    strict: bool = False  # refuse editable and path source dependencies instead of skipping
    directory_only: bool = False  # write the archive's members as a folder


@dataclass(frozen=True)
class PackResult:
    output: Path | None
    manifest: Manifest
    sha256: str
    size: int


def make_plan(options: PackOptions, reporter: Reporter) -> Plan:
    """Read the lock, add injected packages, and check the result is shippable."""
    return _planned(options, reporter)[0]


def _planned(options: PackOptions, reporter: Reporter) -> tuple[Plan, list[Fetched]]:
    """The plan, plus the package files a prefix's package caches already hold, verified."""
    local: list[Fetched] = []
    if options.prefix is not None and options.manifest_path != Path():
        raise EnvpackError("--prefix packs an installed environment, not a lock; drop the lock")
    if options.prefix is None and options.ignore_pip_installed:
        raise EnvpackError("--ignore-pip-installed only makes sense with --prefix")
    if options.prefix is not None:
        caches = [*options.package_caches, *default_caches(options.prefix, os.environ, Path.home())]
        found = plan_prefix(
            options.prefix,
            options.platform,
            caches,
            ignore_pip_installed=options.ignore_pip_installed,
            shipped=frozenset(
                canonicalize_name(p.name.split("-")[0])
                for p in options.inject
                if p.suffix == ".whl"
            ),
        )
        plan, warnings, local = found.plan, list(found.warnings), list(found.local)
    else:
        lock = find_lock(options.manifest_path)
        plan, warnings = plan_lock(
            lock,
            options.environment,
            options.platform or str(rattler.Subdir.current()),
            ignore_pypi_non_wheel=options.ignore_pypi_non_wheel,
            strict=options.strict,
        )
        # A pixi-pack --use-cache dir or a conda pkgs/ dir given as --use-cache is reused too.
        hits = (find_cached(d, channel_layout(d, options.package_caches)) for d in plan.downloads)
        local = [hit for hit in hits if hit is not None]
    for warning in warnings:
        reporter.warn(warning)
    if options.inject:
        plan = _inject(plan, [_injected(p) for p in options.inject], reporter)
    _check_subdirs(plan)
    check_plan_wheels(plan)
    kept = {d.artifact.path for d in plan.downloads}
    return plan, [f for f in local if f.artifact.path in kept]


def pack(
    options: PackOptions, reporter: Reporter, http: urllib3.PoolManager | None = None
) -> PackResult:
    plan, local = _planned(options, reporter)
    if options.directory_only:
        if options.create_executable:
            raise EnvpackError("--directory-only and --create-executable exclude each other")
        check_directory_output(options.output)
    else:
        _check_output_dir(options.output)
    unpacker = _unpacker(options, plan.platform)
    fetcher = Fetcher(
        Cache(options.cache_dir),
        http or default_http(),
        reporter,
        options.fetch,
        Credentials.load(options.auth_file),
    )
    have = {f.artifact.path for f in local}
    mirrored = [
        replace(d, url=apply_mirrors(d.url, options.mirrors))
        for d in plan.downloads
        if d.artifact.path not in have
    ]
    if local:
        reporter.info(f"{len(local)} package files found in package caches")
    reporter.info(f"fetching {len(mirrored)} artifacts ({_mb(plan.total_size)})")
    fetched = [*fetcher.fetch_all(mirrored), *local]
    manifest = _manifest(plan, fetched)
    if options.directory_only and options.output is not None:
        reporter.info(f"writing the folder {options.output}")
        with atomic_directory(options.output) as root:
            folder = DirectoryWriter(root)
            _write_members(folder, plan, fetched, manifest)
        # A folder has no single hash: its manifest's names every file's sha256.
        digest = hashlib.sha256(manifest_to_json(manifest)).hexdigest()
        return PackResult(options.output, manifest, digest, folder.size)
    reporter.info(f"writing {options.output or 'stdout'} ({options.compression})")
    with _atomic_output(options.output, executable=unpacker is not None) as (out, hasher):
        offset = _copy_into(unpacker, out) if unpacker is not None else 0
        payload = _HashingWriter(out)
        _write_archive(payload, plan, fetched, manifest, options)  # type: ignore[arg-type]
        if unpacker is not None:
            out.write(trailer(payload.digest(), offset, payload.size))
        out.flush()
    return PackResult(options.output, manifest, hasher.hexdigest(), hasher.size)


def _unpacker(options: PackOptions, platform: str) -> Path | None:
    if options.unpacker is not None and options.unpacker.parts[0] in ("http:", "https:"):
        raise EnvpackError(
            f"--pixi-unpack-source {options.unpacker}: a URL cannot be embedded; download "
            "the static envunpack and pass its path"
        )
    if not options.create_executable:
        if options.unpacker is not None:
            raise EnvpackError("--unpacker only makes sense with --create-executable")
        return None
    search = [Path(p) for p in os.environ.get("ENVPACK_UNPACKER_DIR", "").split(":") if p]
    # From a source checkout, scripts/build-unpacker's output sits in dist/ at the root.
    search += [Path(__file__).resolve().parents[2] / "dist", Path.cwd() / "dist"]
    return find_unpacker(platform, options.unpacker, search)


def _copy_into(source: Path, out: BinaryIO) -> int:
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
        raise EnvpackError(f"--inject {path}: not a valid conda package ({exc})") from None
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
    out: BinaryIO, plan: Plan, fetched: list[Fetched], manifest: Manifest, options: PackOptions
) -> None:
    with ArchiveWriter(out, options.compression, options.level) as writer:
        _write_members(writer, plan, fetched, manifest)


def _write_members(
    writer: ArchiveWriter | DirectoryWriter, plan: Plan, fetched: list[Fetched], manifest: Manifest
) -> None:
    # The manifest first, so a reader can refuse the archive before writing anything.
    writer.add_bytes(MANIFEST_NAME, manifest_to_json(manifest))
    writer.add_bytes(PIXI_PACK_NAME, pixi_pack_json(plan.platform))
    writer.add_bytes(ENVIRONMENT_YML, environment_yml(plan))
    for name, data in sorted(repodata(plan, fetched).items()):
        writer.add_bytes(name, data)
    for item in sorted(fetched, key=lambda f: f.artifact.path):
        writer.add_file(item.artifact.path, item.path)


# --- output ------------------------------------------------------------------------------------


class _HashingWriter:
    """Hashes what passes through, so the result can report the archive's sha256."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self.size += len(data)
        return self._sink.write(data)

    def flush(self) -> None:
        self._sink.flush()

    def tell(self) -> int:
        return self.size

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def digest(self) -> bytes:
        return self._sha.digest()


def _check_output_dir(output: Path | None) -> None:
    if output is None:
        return
    parent = output.parent if output.parent != Path() else Path.cwd()
    if output.is_dir():
        raise OutputError(f"output {output} is a directory; give a file name such as env.tar")
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write to {parent}: permission denied")


@contextmanager
def _atomic_output(
    output: Path | None, *, executable: bool = False
) -> Iterator[tuple[BinaryIO, _HashingWriter]]:
    """Write to a temp file beside the output and rename, so a failure leaves nothing behind."""
    if output is None:
        hasher = _HashingWriter(sys.stdout.buffer)
        yield hasher, hasher  # type: ignore[misc]
        return
    parent = output.parent
    try:
        handle, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=parent)
    except OSError as exc:
        raise output_error(output, exc, "writing") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as raw:
            hasher = _HashingWriter(raw)
            yield hasher, hasher  # type: ignore[misc]
            raw.flush()
            os.fsync(raw.fileno())
        tmp.chmod(0o755 if executable else 0o644)
        tmp.replace(output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise output_error(output, exc, "writing") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"

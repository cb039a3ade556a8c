"""Packing, step by step: plan → inject → checks → fetch → write the archive (or folder)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import rattler
from packaging.utils import canonicalize_name
from rattler.networking import Client

from envpack.core.errors import EnvpackError, LockError, UsageError, output_error
from envpack.core.manifest import manifest_to_json
from envpack.core.models import Download, Manifest, Plan
from envpack.core.ociref import parse_ref
from envpack.core.progress import Reporter
from envpack.core.selfextract import find_unpacker
from envpack.packer.archivewrite import DEFAULT_LEVEL, Compression
from envpack.packer.cachedir import default_cache_dir, ensure_cache_dir
from envpack.packer.fetch import Cache, Fetched, Fetcher, FetchOptions
from envpack.packer.lockfile import find_lock, plan_lock
from envpack.packer.netconfig import (
    NetworkOptions,
    download_concurrency,
    load_config,
    local_mirror,
    make_client,
)
from envpack.packer.output import atomic_output, check_output
from envpack.packer.packcontents import subject
from envpack.packer.pkgcache import channel_layout, find_cached
from envpack.packer.sbomitems import plan_items
from envpack.packer.sbommemo import warm_up
from envpack.packer.wheelcheck import check_plan_wheels
from envpack.packer.writepack import Layout, write_pack

# Modules only some options need are imported where used: ~0.1 s of every pack's start-up.
if TYPE_CHECKING:
    from envpack.packer.ocipush import Pushed


@dataclass(frozen=True)
class PackOptions:
    manifest_path: Path
    output: Path | None  # None writes to stdout
    environment: str = "default"
    # None: the host's for a lock, the prefix's own for --prefix.
    platform: str | None = None
    compression: Compression = "zstd"
    level: int = DEFAULT_LEVEL
    cache_dir: Path | None = None  # None: default_cache_dir()
    network: NetworkOptions = field(default_factory=NetworkOptions)
    inject: Sequence[Path] = ()
    ignore_pypi_non_wheel: bool = False
    fetch: FetchOptions = field(default_factory=FetchOptions)
    create_executable: bool = False
    unpacker: Path | None = None
    force: bool = False  # replace an existing output (never an input)
    prefix: Path | None = None  # pack this installed environment instead of a lock
    ignore_pip_installed: bool = False
    package_caches: Sequence[Path] = ()  # searched for a prefix's package files first
    strict: bool = False  # refuse editable and path source dependencies instead of skipping
    directory_only: bool = False  # write the archive's members as a folder
    entrypoint: str | None = None  # with create_executable: an app file (appfile.py)
    registry: str | None = None  # oci://HOST/REPO:TAG: push there instead of writing output
    insecure: bool = False  # the registry speaks plain HTTP
    mount_from: tuple[str, ...] = ()  # repositories of the registry to mount missing blobs from


@dataclass(frozen=True)
class PackResult:
    output: Path | None
    manifest: Manifest
    sha256: str  # of the archive; of the OCI manifest for a push
    size: int
    pushed: Pushed | None = None


def make_plan(options: PackOptions, reporter: Reporter) -> Plan:
    """Read the lock (or the prefix), add injected packages, and check it is shippable."""
    return _planned(options, reporter)[0]


def _planned(options: PackOptions, reporter: Reporter) -> tuple[Plan, list[Fetched]]:
    """The plan, plus the package files that package caches already hold, verified."""
    local: list[Fetched] = []
    if options.prefix is not None and options.manifest_path != Path():
        raise UsageError("--prefix packs an installed environment, not a lock; drop the lock")
    if options.prefix is None and options.ignore_pip_installed:
        raise UsageError("--ignore-pip-installed only makes sense with --prefix")
    if options.prefix is not None:
        from envpack.packer.pkgcache import default_caches
        from envpack.packer.prefix import plan_prefix

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
        from envpack.packer.inject import inject, injected

        plan = inject(plan, [injected(p) for p in options.inject], reporter)
    _check_subdirs(plan)
    check_plan_wheels(plan)
    kept = {d.artifact.path for d in plan.downloads}
    return plan, [f for f in local if f.artifact.path in kept]


def pack(options: PackOptions, reporter: Reporter, client: Client | None = None) -> PackResult:
    if options.directory_only and options.create_executable:
        raise UsageError("--directory-only and --create-executable exclude each other")
    if options.registry is not None and (options.directory_only or options.create_executable):
        raise UsageError(
            "-o oci://… pushes the archive's members: drop --directory-only and --create-executable"
        )
    if options.insecure and options.registry is None:
        raise UsageError("--insecure is for -o oci://… (a plain-HTTP registry) only")
    ref = parse_ref(options.registry) if options.registry is not None else None
    plan, local = _planned(options, reporter)
    unpacker = _unpacker(options, plan.platform)
    app = None
    if options.entrypoint is not None:
        from envpack.packer import appfile

        app = appfile.prepare(options.entrypoint, plan.platform, unpacker)
    inputs = pack_inputs(options, unpacker)
    if options.directory_only:
        from envpack.packer.packdir import check_directory_output

        check_directory_output(options.output)
    check_output(options.output, inputs, force=options.force and not options.directory_only)
    # Every check that can fail before a download does: the cache, then the output file.
    cache = ensure_cache_dir(options.cache_dir or default_cache_dir())
    # Reached and logged into before a download: a wrong host or password costs nothing.
    registry = None
    if ref is not None:
        from envpack.packer.registrypush import PushSession

        registry = PushSession(ref, options.insecure, reporter, options.mount_from)
    config = load_config(options.network)
    fetch = options.fetch
    if fetch.concurrency is None:
        fetch = replace(fetch, concurrency=download_concurrency(config))
    client = client or make_client(config)
    # To an archive file, cache hits are hashed as they are copied (writepack.py); a pipe, an
    # app file's check of the packages and a folder's plain copies need them checked first.
    deferred = options.output is not None and app is None and not options.directory_only
    fetcher = Fetcher(Cache(cache), client, reporter, fetch, hash_hits=not deferred)
    have = {f.artifact.path for f in local}
    mirrored = [
        replace(d, url=local_mirror(d.url, config.mirrors))
        for d in plan.downloads
        if d.artifact.path not in have
    ]
    if local:
        reporter.info(f"{len(local)} package files found in package caches")
    # Every output below holds an SBOM: unless one is remembered, the lock's is built on a
    # thread while the downloads run.
    warm_up(plan_items(plan), subject(plan), cache)
    if options.directory_only and options.output is not None:
        from envpack.packer.packdir import write_folder

        fetched = _fetch(fetcher, mirrored, local, cache, plan, reporter)
        manifest, size = write_folder(options.output, plan, fetched, reporter, cache)
        # A folder has no single hash: its manifest names every file's sha256.
        digest = hashlib.sha256(manifest_to_json(manifest)).hexdigest()
        return PackResult(options.output, manifest, digest, size)
    if registry is not None:  # the folder's members, pushed as blobs: what a pull reads back
        import tempfile

        from envpack.packer.ocipush import push_pack
        from envpack.packer.packdir import write_folder

        fetched = _fetch(fetcher, mirrored, local, cache, plan, reporter)
        with tempfile.TemporaryDirectory(prefix="envpack-push-", dir=cache) as tmp:
            manifest, _ = write_folder(Path(tmp) / "pack", plan, fetched, reporter, cache)
            reporter.info(f"pushing to {ref}")
            pushed = push_pack(Path(tmp) / "pack", manifest, registry)
        return PackResult(None, manifest, pushed.digest[7:], pushed.size, pushed)
    by_path = {d.artifact.path: d for d in mirrored}
    checking = Fetcher(Cache(cache), client, reporter, fetch)  # for a corrupt hit, again

    def refetch(bad: Fetched) -> Fetched:
        try:
            return checking.fetch(by_path[bad.artifact.path])
        except OSError as exc:  # as in _fetch: the fetcher's own reads and writes
            raise output_error(cache, exc, "writing the download cache") from None

    layout = Layout(options.compression, options.level, unpacker, app)
    with atomic_output(options.output, executable=unpacker is not None) as out:
        fetched = _fetch(fetcher, mirrored, local, cache, plan, reporter)
        reporter.info(f"writing {options.output or 'stdout'} ({options.compression})")
        manifest = write_pack(out, plan, fetched, layout, reporter, refetch, cache)
        digest = out.hexdigest()
    return PackResult(options.output, manifest, digest, out.size)


def _fetch(
    fetcher: Fetcher,
    mirrored: list[Download],
    local: list[Fetched],
    cache: Path,
    plan: Plan,
    reporter: Reporter,
) -> list[Fetched]:
    reporter.info(f"fetching {len(mirrored)} artifacts ({plan.total_size / 1e6:.1f} MB)")
    try:
        return [*fetcher.fetch_all(mirrored), *local]
    except OSError as exc:  # the fetcher's own reads and writes are of the cache
        raise output_error(cache, exc, "writing the download cache") from None


def pack_inputs(options: PackOptions, unpacker: Path | None) -> list[tuple[str, Path]]:
    """Every file a pack reads, so that no spelling of -o can overwrite one of them."""
    found: list[tuple[str, Path]] = []
    if options.prefix is None:
        with contextlib.suppress(EnvpackError):
            found.append(("the lock", find_lock(options.manifest_path)))
        if options.manifest_path.is_file():
            found.append(("the manifest", options.manifest_path))
    else:
        found.append(("the --prefix", options.prefix))
    found += [("an --inject file", p) for p in options.inject]
    if unpacker is not None:
        found.append(("the --unpacker", unpacker))
    return found


def _unpacker(options: PackOptions, platform: str) -> Path | None:
    if options.unpacker is not None and options.unpacker.parts[0] in ("http:", "https:"):
        raise UsageError(
            f"--pixi-unpack-source {options.unpacker}: a URL cannot be embedded; download "
            "the static envunpack and pass its path"
        )
    if not options.create_executable:
        if options.unpacker is not None:
            raise UsageError("--unpacker only makes sense with --create-executable")
        return None
    search = [Path(p) for p in os.environ.get("ENVPACK_UNPACKER_DIR", "").split(":") if p]
    search.append(Path.cwd() / "dist")  # where scripts/build-unpacker puts it
    return find_unpacker(platform, options.unpacker, search)


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

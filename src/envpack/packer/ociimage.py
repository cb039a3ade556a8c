"""`envpack --oci-image`: a runnable OCI image layout archive, built without a daemon.

pack (into a private folder) → checks against the base → ocistage (install at the final
path) → ocilayers (one layer per package) → config, manifest, index → one reproducible tar.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from rattler.networking import Client

from envpack import __version__
from envpack.core.errors import UsageError
from envpack.core.layout import SBOM_NAME
from envpack.core.progress import Reporter, SilentReporter
from envpack.packer.archivewrite import fixed_tarinfo
from envpack.packer.lockfile import find_lock
from envpack.packer.ocibase import MANIFEST_MEDIA, BaseImage, base_glibc, oci_platform, read_base
from envpack.packer.ocilayers import Layer, group, write_blob, write_layer
from envpack.packer.ocipush import Pushed
from envpack.packer.ocistage import Staged, stage
from envpack.packer.output import atomic_output, check_output
from envpack.packer.pack import PackOptions, PackResult, make_plan, pack, pack_inputs
from envpack.packer.urls import redact
from envpack.target.hostcheck import check_virtual_packages

LAYER_MEDIA = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA = "application/vnd.oci.image.config.v1+json"
# Same inputs, same digest: the image's time is fixed, like every mtime in it.
TAG = "latest"
CREATED = "1970-01-01T00:00:00Z"
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageOptions:
    dest_prefix: PurePosixPath = field(default_factory=lambda: PurePosixPath("/app/env"))
    base: Path | None = None  # an oci-archive tar or an OCI layout dir; None: scratch
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None


# The image's manifest bytes and where each digest's blob is → what was pushed.
Push = Callable[[bytes, Callable[[str], Path]], Pushed]


@dataclass(frozen=True)
class ImageResult:
    pack: PackResult
    layers: int  # of the env, not counting the base's
    base_layers: int
    sbom: bytes  # the SBOM in the last layer, for a registry referrer
    image_manifest: dict[str, object]  # its descriptor (mediaType, digest, size): a subject


def build_image(
    options: PackOptions,
    image: ImageOptions,
    reporter: Reporter,
    client: Client | None = None,
    push: Push | None = None,
) -> ImageResult:
    """The image as the OCI archive `options.output`, or, with `push`, its blobs and manifest
    handed to it straight from the build's blob dir (no archive written, none read back)."""
    _check_options(options, image)
    assert options.output is not None
    # Everything that can refuse before a download: plan, base, output.
    plan = make_plan(options, SilentReporter())  # pack() below reports its warnings once
    oci_platform(plan.platform)
    inputs = pack_inputs(options, None) + ([("the --base", image.base)] if image.base else [])
    check_output(options.output, inputs, force=options.force)
    with tempfile.TemporaryDirectory(prefix=".envpack-image-", dir=options.output.parent) as tmp:
        work = Path(tmp)
        base = read_base(image.base, work, plan.platform) if image.base is not None else None
        glibc = base_glibc(base, plan.platform) if base is not None else None
        if base is None:
            reporter.warn(
                "no --base: the image is FROM scratch, so the env must bring its own libc "
                "(conda's glibc-based packages need --base with a glibc)"
            )
        elif glibc is None:
            reporter.warn(f"--base {base.name}: no libc.so.6 found in it; glibc not checked")
        else:  # before any download: a base too old for the packages costs nothing
            check_virtual_packages(plan.virtual_packages, {"__glibc": glibc})
        folder = work / "pack"
        private = replace(
            options, output=folder, directory_only=True, force=False, registry=None, insecure=False
        )
        packed = pack(private, reporter, client)
        origins = {
            d.artifact.filename: redact(d.url) for d in plan.downloads if d.artifact.kind == "conda"
        }
        staged = stage(folder, work / "stage", image.dest_prefix, glibc, origins, reporter)
        if staged.sources_scripts:
            activate = image.dest_prefix.parent / "activate.sh"
            reporter.warn(
                "the env has activate.d scripts, which an image config cannot run: its "
                f"variables are set, and `. {activate}` runs the scripts too"
            )
        blobs = work / "blobs"
        blobs.mkdir()
        reporter.info("writing image layers")
        jobs = [
            *((g.files, g.packages) for g in group(staged.parts)),
            (staged.rest, ("conda-meta",)),
        ]
        # zlib lets go of the GIL: layers compress in parallel; each one's bytes stay the same.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            layers = list(pool.map(lambda j: write_layer(staged.root, j[0], blobs, j[1]), jobs))
        config = _config(staged, image, base, layers)
        config_digest = write_blob(blobs, config)
        manifest = _manifest(config_digest, len(config), base, layers)
        manifest_digest = write_blob(blobs, manifest)
        files = {p.name: p for p in blobs.iterdir() if not p.name.startswith(".")}
        files.update({p.name: p for _, p in base.layers} if base is not None else {})
        sbom = (folder / SBOM_NAME).read_bytes()
        if push is not None:
            pushed = push(manifest, lambda digest: files[digest.removeprefix("sha256:")])
            result = replace(packed, output=None, sha256=pushed.digest[7:], size=pushed.size)
            result = replace(result, pushed=pushed)
        else:
            with atomic_output(options.output) as out:
                _write_archive(out, _index(manifest_digest, len(manifest)), files)
                out.flush()
            result = replace(packed, output=options.output, sha256=out.hexdigest(), size=out.size)
    descriptor = {
        "mediaType": MANIFEST_MEDIA,
        "digest": f"sha256:{manifest_digest}",
        "size": len(manifest),
    }
    return ImageResult(result, len(layers), len(base.layers) if base else 0, sbom, descriptor)


def _check_options(options: PackOptions, image: ImageOptions) -> None:
    if options.create_executable:
        raise UsageError("--oci-image and --create-executable exclude each other; pick one")
    if options.directory_only:
        raise UsageError("--oci-image and --directory-only exclude each other; pick one")
    if options.output is None:
        raise UsageError("--oci-image needs -o FILE (an OCI archive such as app.oci.tar)")
    dest = image.dest_prefix
    if dest.root != "/" or ".." in dest.parts or len(dest.parts) < 2:
        raise UsageError(f"--dest-prefix {dest}: give an absolute path below /, e.g. /app/env")
    if image.base is not None and not (image.base.is_file() or image.base.is_dir()):
        raise UsageError(f"--base {image.base}: no such file or directory")
    if options.prefix is None:
        find_lock(options.manifest_path)  # a missing lock is named before the base is read


def _config(
    staged: Staged, image: ImageOptions, base: BaseImage | None, layers: Sequence[Layer]
) -> bytes:
    os_name, arch, variant = oci_platform(staged.platform)
    inherited: dict[str, Any] = dict(base.config.get("config") or {}) if base else {}
    env = _merge_env(inherited.get("Env") or [], staged)
    inherited["Env"] = env
    if image.entrypoint is not None or image.cmd is not None:
        # A new entrypoint resets the base's cmd, as a Dockerfile's ENTRYPOINT does.
        inherited.pop("Entrypoint", None)
        inherited.pop("Cmd", None)
        if image.entrypoint is not None:
            inherited["Entrypoint"] = list(image.entrypoint)
        if image.cmd is not None:
            inherited["Cmd"] = list(image.cmd)
    elif not inherited.get("Entrypoint") and not inherited.get("Cmd"):
        inherited["Cmd"] = [str(image.dest_prefix / "bin" / "python")]
    labels = dict(inherited.get("Labels") or {})
    labels.update(_labels(staged))
    inherited["Labels"] = labels
    base_ids = list((base.config.get("rootfs") or {}).get("diff_ids") or []) if base else []
    history = list(base.config.get("history") or []) if base else []
    history += [
        {"created": CREATED, "created_by": f"envpack --oci-image: {', '.join(layer.packages)}"}
        for layer in layers
    ]
    doc: dict[str, Any] = {
        "architecture": arch,
        "os": os_name,
        "created": CREATED,
        "config": inherited,
        "rootfs": {
            "type": "layers",
            "diff_ids": base_ids + [f"sha256:{x.diff_id}" for x in layers],
        },
        "history": history,
    }
    if variant:
        doc["variant"] = variant
    return _canonical(doc)


def _merge_env(base_env: list[str], staged: Staged) -> list[str]:
    env = dict(item.split("=", 1) for item in base_env if "=" in item)
    ours = dict(staged.env)
    ours["PATH"] = ":".join(p for p in (ours.get("PATH"), env.get("PATH") or _DEFAULT_PATH) if p)
    env.update(ours)
    return [f"{k}={v}" for k, v in sorted(env.items())]


def _labels(staged: Staged) -> dict[str, str]:
    m = staged.manifest
    return {
        "org.opencontainers.image.title": m.environment,
        "org.opencontainers.image.version": m.lock_sha256 or "",
        "org.opencontainers.image.revision": m.lock_sha256 or "",
        "org.opencontainers.image.description": (
            f"pixi environment {m.environment} for {m.platform}, lock sha256 {m.lock_sha256}"
        ),
        "org.opencontainers.image.created": CREATED,
        "dev.envpack.lock-sha256": m.lock_sha256 or "",
        "dev.envpack.version": __version__,
    }


def _manifest(config: str, size: int, base: BaseImage | None, layers: Sequence[Layer]) -> bytes:
    descriptors = [dict(d) for d, _ in base.layers] if base else []
    descriptors += [
        {
            "mediaType": LAYER_MEDIA,
            "digest": f"sha256:{x.digest}",
            "size": x.size,
            "annotations": {"dev.envpack.packages": ",".join(x.packages)},
        }
        for x in layers
    ]
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA,
        "config": {"mediaType": CONFIG_MEDIA, "digest": f"sha256:{config}", "size": size},
        "layers": descriptors,
    }
    return _canonical(doc)


def _index(manifest: str, size: int) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": MANIFEST_MEDIA,
                "digest": f"sha256:{manifest}",
                "size": size,
                # skopeo's oci-archive:FILE:TAG and umoci's --image DIR:TAG find it by this.
                "annotations": {"org.opencontainers.image.ref.name": TAG},
            }
        ],
    }
    return _canonical(doc)


def _write_archive(out: Any, index: bytes, files: dict[str, Path]) -> None:
    """oci-layout, index.json and blobs/sha256/*, sorted, with fixed metadata."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}))
        _add_bytes(tar, "index.json", index)
        for directory in ("blobs", "blobs/sha256"):
            tar.addfile(_info(directory, tarfile.DIRTYPE, 0))
        for name in sorted(files):
            info = _info(f"blobs/sha256/{name}", tarfile.REGTYPE, files[name].stat().st_size)
            with files[name].open("rb") as fh:
                tar.addfile(info, fh)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))


def _info(name: str, kind: bytes, size: int) -> tarfile.TarInfo:
    return fixed_tarinfo(name, size, kind=kind, mode=0o755 if kind == tarfile.DIRTYPE else 0o644)


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

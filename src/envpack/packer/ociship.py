"""`--oci-image` with a registry on either side: a `--base` pulled from one, `-o oci://` to one.

A push sends the image's blobs from the build's blob dir, the bytes an archive would hold,
with no archive written; its SBOM then follows as a referrer, in the same session. A --base
from the registry pushed to is not sent again: its blobs are mounted from its repository.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from envpack.core.ociref import parse_ref
from envpack.core.progress import Reporter
from envpack.packer.ocibase import oci_platform
from envpack.packer.ociimage import ImageOptions, ImageResult, build_image
from envpack.packer.ocipush import Pushed, image_blobs, push_image
from envpack.packer.ocisbom import push_sbom_referrer
from envpack.packer.pack import PackOptions
from envpack.packer.registrypush import PushSession
from envpack.target.hostcheck import host_platform
from envpack.target.ocipull import pull_to_layout


@dataclass(frozen=True)
class Shipped:
    image: ImageResult
    referrer: str | None  # the SBOM referrer's manifest digest, for a push


def ship_image(
    options: PackOptions, image: ImageOptions, base: str | None, reporter: Reporter
) -> Shipped:
    """Build the image (on a base from a file, a layout or a registry); push it if asked."""
    ref = parse_ref(options.registry) if options.registry is not None else None
    # Reached and logged into before the build: a wrong host or password costs nothing.
    registry = PushSession(ref, options.insecure, reporter, options.mount_from) if ref else None
    mounts: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="envpack-image-") as tmp:
        work = Path(tmp)
        if base is not None and base.startswith("oci://"):
            os_name, arch, _ = oci_platform(options.platform or host_platform())
            pull_to_layout(
                base,
                work / "base",
                platform=f"{os_name}/{arch}",
                insecure=options.insecure,
                reporter=reporter,
            )
            image = replace(image, base=work / "base")
            base_ref = parse_ref(base)
            if ref is not None and base_ref.host == ref.host:
                mounts = dict.fromkeys(image_blobs(work / "base"), base_ref.repository)
        elif base is not None:
            image = replace(image, base=Path(base))
        if registry is None:
            return Shipped(build_image(options, image, reporter), None)
        # Built in `work`, pushed from its blob dir: the archive path is never written.
        local = replace(options, output=work / "image.oci.tar", registry=None, insecure=False)

        def push(manifest: bytes, blob: Callable[[str], Path]) -> Pushed:
            return push_image(registry, manifest, blob, mounts)

        built = build_image(local, image, reporter, push=push)
        referrer = push_sbom_referrer(registry, built.image_manifest, built.sbom)
    return Shipped(built, referrer)

"""OCI base images for tests and the bench: a cached Debian root as a one-layer image, made with
umoci (no daemon), as an OCI layout directory and as an `oci-archive` tar beside it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from devtools.rootfs import ensure_binfmt, ensure_rootfs, host_arch

BASE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _run(*argv: str | Path) -> None:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: {result.stderr.strip()[-500:]}")


def base_image(suite: str, arch: str, work: Path) -> tuple[Path, Path]:
    """(OCI layout dir, oci-archive tar) of `suite`/`arch`, tag `base`; arm64 runs via binfmt."""
    if arch != host_arch():
        ensure_binfmt(arch)
    root = ensure_rootfs(suite, arch)
    layout, bundle = work / f"{suite}-{arch}-layout", work / f"{suite}-{arch}-bundle"
    _run("umoci", "init", "--layout", layout)
    _run("umoci", "new", "--image", f"{layout}:base")
    _run("umoci", "unpack", "--image", f"{layout}:base", bundle)
    _run("cp", "-a", f"{root}/.", bundle / "rootfs")
    _run("umoci", "repack", "--image", f"{layout}:base", bundle)
    shutil.rmtree(bundle)
    _run("umoci", "config", "--image", f"{layout}:base", "--os", "linux", "--config.env", BASE_PATH)
    _run("umoci", "config", "--image", f"{layout}:base", "--architecture", arch)
    archive = work / f"{suite}-{arch}.oci.tar"
    _run("skopeo", "copy", "-q", f"oci:{layout}:base", f"oci-archive:{archive}:base")
    return layout, archive

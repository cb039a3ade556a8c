"""Real OCI tools for the image tests: a base image made from a debootstrapped root with umoci,
`skopeo inspect`, and an image run without a daemon (umoci unpack + bubblewrap)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from devtools.rootfs import RootfsError, ensure_binfmt, ensure_rootfs


def need_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/test installs them)")


def run(*argv: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def checked(*argv: str | Path) -> str:
    result = run(*argv)
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


def base_from_rootfs(suite: str, arch: str, work: Path) -> tuple[Path, Path]:
    """A one-layer base image of the cached Debian root: (OCI layout dir, oci-archive tar)."""
    need_tools("umoci", "skopeo")
    if arch != "amd64":
        try:
            ensure_binfmt(arch)
        except (RootfsError, OSError) as exc:
            pytest.skip(f"cannot run {arch} binaries here: {exc}")
    root = ensure_rootfs(suite, arch)
    layout, bundle = work / f"{suite}-{arch}-layout", work / f"{suite}-{arch}-bundle"
    checked("umoci", "init", "--layout", layout)
    checked("umoci", "new", "--image", f"{layout}:base")
    checked("umoci", "unpack", "--image", f"{layout}:base", bundle)
    checked("cp", "-a", f"{root}/.", bundle / "rootfs")
    checked("umoci", "repack", "--image", f"{layout}:base", bundle)
    shutil.rmtree(bundle)
    path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    checked("umoci", "config", "--image", f"{layout}:base", "--os", "linux", "--config.env", path)
    checked("umoci", "config", "--image", f"{layout}:base", "--architecture", arch)
    archive = work / f"{suite}-{arch}.oci.tar"
    checked("skopeo", "copy", "-q", f"oci:{layout}:base", f"oci-archive:{archive}:base")
    return layout, archive


def inspect(archive: Path, *, config: bool = False) -> dict[str, Any]:
    need_tools("skopeo")
    extra = ["--config"] if config else []
    doc: dict[str, Any] = json.loads(checked("skopeo", "inspect", *extra, f"oci-archive:{archive}"))
    return doc


def manifest_of(archive: Path) -> dict[str, Any]:
    """The image manifest, read straight from the archive's index.json and blobs."""
    with tarfile.open(archive) as tar:
        index = json.loads(_member(tar, "index.json"))
        digest = index["manifests"][0]["digest"].split(":")[1]
        doc: dict[str, Any] = json.loads(_member(tar, f"blobs/sha256/{digest}"))
        return doc


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    assert handle is not None
    return handle.read()


def unpack(archive: Path, work: Path) -> Path:
    """The archive's `latest` through `skopeo copy oci-archive:FILE:latest oci:DIR:latest`, then
    `umoci unpack` into a runtime bundle (config.json + rootfs/)."""
    need_tools("umoci", "skopeo")
    layout, bundle = work / "layout", work / "bundle"
    work.mkdir(parents=True)
    checked("skopeo", "copy", "-q", f"oci-archive:{archive}:latest", f"oci:{layout}:latest")
    checked("umoci", "unpack", "--image", f"{layout}:latest", bundle)
    return bundle


def run_bundle(bundle: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run in the bundle's rootfs with exactly the env of its config.json, no network.

    No argv: the image's own entrypoint and cmd (config.json's process.args).
    """
    need_tools("bwrap")
    process = json.loads((bundle / "config.json").read_text())["process"]
    env: list[str] = []
    for item in process["env"]:
        key, _, value = item.partition("=")
        env += ["--setenv", key, value]
    return run(
        *("bwrap", "--bind", bundle / "rootfs", "/", "--dev", "/dev", "--proc", "/proc"),
        *("--tmpfs", "/tmp", "--unshare-all", "--die-with-parent", "--clearenv", *env),
        *("--chdir", process.get("cwd") or "/"),
        *(argv or process["args"]),
    )

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

from devtools.ociimages import base_image
from devtools.rootfs import RootfsError


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
    try:
        return base_image(suite, arch, work)
    except RootfsError as exc:
        pytest.skip(f"no {suite}/{arch} root to make a base of: {exc}")


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

"""Where things are inside a pack, in one place: member names, directories, their order.

A pack is a tar (plain or zstd) or, with --directory-only, a folder holding the same files.
pixi-unpack reads the same layout (pixi-pack.json, environment.yml, channel/), which is why
the names are what they are.
"""

from __future__ import annotations

MANIFEST_NAME = "envpack.json"
PIXI_PACK_NAME = "pixi-pack.json"
ENVIRONMENT_YML = "environment.yml"
SBOM_NAME = "sbom.cdx.json"
CHANNEL_DIR = "channel"
PYPI_DIR = "pypi"
REPODATA_NAME = "repodata.json"

# The members that lead a pack, in this order: a reader checks them before any artifact.
METADATA_ORDER = (MANIFEST_NAME, PIXI_PACK_NAME, ENVIRONMENT_YML, SBOM_NAME)

# Reads and copies move this much at a time: big enough to keep syscalls and the
# compressor's per-call cost low, small enough to keep memory flat.
CHUNK = 1 << 20

# The Linux platforms we ship a static envunpack for, and their machine names.
ARCHES = {"linux-64": "x86_64", "linux-aarch64": "aarch64"}


def repodata_path(subdir: str) -> str:
    return f"{CHANNEL_DIR}/{subdir}/{REPODATA_NAME}"


def is_repodata_path(name: str) -> bool:
    """`channel/<subdir>/repodata.json`."""
    parts = name.split("/")
    return len(parts) == 3 and parts[0] == CHANNEL_DIR and parts[2] == REPODATA_NAME


def is_artifact_path(name: str) -> bool:
    """`channel/<subdir>/<package>.conda|.tar.bz2` or `pypi/<wheel>.whl`."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == CHANNEL_DIR:
        return parts[2].endswith((".conda", ".tar.bz2"))
    return len(parts) == 2 and parts[0] == PYPI_DIR and parts[1].endswith(".whl")

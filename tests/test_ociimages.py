"""devtools.ociimages: a Debian root as a base image, readable by skopeo and by envpack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envpack.packer.ocibase import base_glibc, read_layout
from tests.ocirun import base_from_rootfs, inspect

pytestmark = [pytest.mark.slow, pytest.mark.container]


def test_bookworm_base(tmp_path: Path) -> None:
    layout, archive = base_from_rootfs("bookworm", "amd64", tmp_path)
    info = inspect(archive, config=True)
    assert (info["os"], info["architecture"]) == ("linux", "amd64")
    assert any(e.startswith("PATH=/usr/local/sbin:") for e in info["config"]["Env"])
    index = json.loads((layout / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [
        "base"
    ]
    base = read_layout(layout, "linux-64", "bookworm")
    assert len(base.layers) == 1
    assert base_glibc(base, "linux-64") is not None

"""envpack.core.layout: member names and the path predicates every reader uses."""

from __future__ import annotations

from envpack.core.layout import (
    METADATA_ORDER,
    is_artifact_path,
    is_repodata_path,
    repodata_path,
)


def test_the_manifest_leads() -> None:
    assert METADATA_ORDER[0] == "envpack.json"
    assert METADATA_ORDER[1] == "pixi-pack.json"  # what pixi-unpack looks for


def test_predicates() -> None:
    assert is_repodata_path(repodata_path("linux-64"))
    assert is_artifact_path("channel/noarch/six-1.16.0-pyh6c4a22f_0.conda")
    assert is_artifact_path("channel/linux-64/zlib-1.3-0.tar.bz2")
    assert is_artifact_path("pypi/six-1.16.0-py2.py3-none-any.whl")
    for name in (
        "channel/linux-64/repodata.json",
        "channel/x.conda",
        "pypi/x.tar.gz",
        "channel/linux-64/sub/x.conda",
        "envpack.json",
    ):
        assert not is_artifact_path(name), name
    assert not is_repodata_path("channel/repodata.json")

"""models and the layout predicates it builds paths with: artifact paths, labels, lookups."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from envpack.core.layout import is_artifact_path, is_repodata_path
from envpack.core.models import (
    Artifact,
    Download,
    Manifest,
    Plan,
)
from envpack.target.receive import read_manifest


@pytest.mark.parametrize(
    ("name", "repodata", "artifact"),
    [
        ("channel/linux-64/repodata.json", True, False),
        ("channel/noarch/repodata.json", True, False),
        ("channel/repodata.json", False, False),
        ("channel/linux-64/sub/repodata.json", False, False),
        ("other/linux-64/repodata.json", False, False),
        ("channel/linux-64/python-3.11.2-h_0.conda", False, True),
        ("channel/noarch/six-1.17.0-py_0.tar.bz2", False, True),
        ("channel/linux-64/notes.txt", False, False),
        ("channel/x.conda", False, False),
        ("pypi/six-1.17.0-py3-none-any.whl", False, True),
        ("pypi/sub/six-1.17.0-py3-none-any.whl", False, False),
        ("pypi/six.tar.gz", False, False),
        ("envpack.json", False, False),
    ],
)
def test_member_predicates(name: str, repodata: bool, artifact: bool) -> None:
    assert is_repodata_path(name) is repodata
    assert is_artifact_path(name) is artifact


def test_artifact_path_and_label() -> None:
    conda = Artifact(
        "conda", "python", "3.11.2", "python-3.11.2-h_0.conda", build="h_0", subdir="linux-64"
    )
    wheel = Artifact("wheel", "six", "1.17.0", "six-1.17.0-py3-none-any.whl")
    assert conda.path == "channel/linux-64/python-3.11.2-h_0.conda"
    assert is_artifact_path(conda.path)
    assert conda.label == "python 3.11.2 h_0"
    assert wheel.path == "pypi/six-1.17.0-py3-none-any.whl"
    assert is_artifact_path(wheel.path)
    assert wheel.label == "six 1.17.0"


def test_plan_total_size_counts_unknown_sizes_as_zero() -> None:
    sized = Artifact("wheel", "a", "1", "a-1-py3-none-any.whl", size=10)
    unsized = Artifact("wheel", "b", "1", "b-1-py3-none-any.whl")
    plan = Plan("default", "linux-64", "0" * 64, (), (Download(sized, "u"), Download(unsized, "v")))
    assert plan.total_size == 10
    # The record is metadata carried along, not part of a download's identity.
    assert Download(sized, "u", record={"x": 1}) == Download(sized, "u")


def test_manifest_finds_every_archived_artifact(archives: dict[str, Path]) -> None:
    with archives["none"].open("rb") as stream:
        manifest = read_manifest(stream)
    assert isinstance(manifest, Manifest)
    with tarfile.open(archives["none"]) as tar:
        members = [m.name for m in tar.getmembers() if is_artifact_path(m.name)]
    assert sorted(members) == sorted(a.path for a in manifest.artifacts)
    for name in members:
        found = manifest.artifact_for(name)
        assert found is not None
        assert found.path == name
    assert manifest.artifact_for("channel/linux-64/absent-1-0.conda") is None
    assert manifest.artifact_for("envpack.json") is None

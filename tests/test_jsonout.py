"""envpack.core.jsonout: one schema for every --json document."""

from __future__ import annotations

import json

from envpack.core.jsonout import document
from envpack.core.models import Artifact


def test_artifacts_are_a_list_and_total_is_their_sum() -> None:
    a = Artifact(
        "conda", "six", "1.0", "six-1.0-0.conda", sha256="ab" * 32, size=10, subdir="noarch"
    )
    b = Artifact("wheel", "x", "2", "x-2-py3-none-any.whl", sha256="cd" * 32, size=5)
    doc = json.loads(
        document("pack", platform="linux-64", environment="default", artifacts=[a, b], output="o")
    )
    assert doc["command"] == "pack" and doc["output"] == "o"
    assert [x["path"] for x in doc["artifacts"]] == [
        "channel/noarch/six-1.0-0.conda",
        "pypi/x-2-py3-none-any.whl",
    ]
    assert doc["total_size"] == 15


def test_mappings_pass_through_for_pixi_pack_listings() -> None:
    doc = json.loads(
        document(
            "list", platform="linux-64", environment=None, artifacts=[{"path": "p", "size": None}]
        )
    )
    assert doc["environment"] is None and doc["total_size"] == 0

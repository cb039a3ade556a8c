"""envpack.packer.sbomitems: a plan's items carry the shipped artifacts and the lock's URLs,
and naming them imports no cyclonedx."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

from envpack.core.models import Artifact, Download, Plan
from envpack.packer.sbomitems import plan_items


def _plan() -> Plan:
    numpy = Artifact(
        "conda", "numpy", "2.2.6", "numpy-2.2.6-0.conda", "a" * 64, None, 10, "0", "linux-64"
    )
    extra = Artifact("conda", "extra", "1", "extra-1-0.conda", "b" * 64, None, 5, "0", "noarch")
    return Plan(
        "default",
        "linux-64",
        "c" * 64,
        (),
        (
            Download(
                numpy, "https://conda.example/ch/linux-64/numpy-2.2.6-0.conda", {"license": "BSD"}
            ),
            Download(extra, "/home/me/extra-1-0.conda", {}, injected=True),
        ),
    )


def test_items_take_the_shipped_artifacts_by_path() -> None:
    plan = _plan()
    shipped = replace(plan.downloads[0].artifact, sha256="d" * 64, size=11)
    numpy, extra = plan_items(plan, [shipped])
    assert numpy.artifact == shipped
    assert numpy.record == {"license": "BSD"}
    assert numpy.url == plan.downloads[0].url
    # Not shipped anew: the lock's artifact stays; an injected file names no URL.
    assert extra.artifact == plan.downloads[1].artifact
    assert (extra.url, extra.injected) == (None, True)


def test_naming_items_imports_no_cyclonedx() -> None:
    code = (
        "import sys; import envpack.packer.sbomitems, envpack.packer.sbommemo; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cyclonedx', 'packageurl')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""The one tiny real wheel the tests and the bench inject: `pip wheel` of a setuptools project
with a console script, a raw script and a data file, built offline in a temp dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DIST = "hello_envpack-1.0"
WHEEL_NAME = f"{DIST}-py3-none-any.whl"

_PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "hello-envpack"
version = "1.0"

[project.scripts]
hello-envpack = "hello_envpack:main"

[tool.setuptools]
script-files = ["scripts/hello-raw"]
data-files = {"share/hello-envpack" = ["share/readme.txt"]}

[tool.setuptools.package-data]
hello_envpack = ["*.txt"]
"""


def wheel_capable_python() -> str | None:
    """An interpreter with pip, setuptools and wheel, so `pip wheel` works offline."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if not Path(candidate).exists():
            continue
        probe = subprocess.run(
            [candidate, "-c", "import setuptools, wheel, pip"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return candidate
    return None


def build_wheel(out_dir: Path) -> Path:
    """`pip wheel` of a tiny project with a console script, a raw script and a data file."""
    python = wheel_capable_python()
    if python is None:
        raise RuntimeError("no interpreter with pip, setuptools and wheel to build a test wheel")
    project = out_dir / "project"
    (project / "src" / "hello_envpack").mkdir(parents=True)
    (project / "scripts").mkdir()
    (project / "share").mkdir()
    (project / "pyproject.toml").write_text(_PYPROJECT)
    (project / "src" / "hello_envpack" / "__init__.py").write_text(
        'def main() -> None:\n    print("hello from envpack")\n'
    )
    (project / "src" / "hello_envpack" / "data.txt").write_text("data\n")
    (project / "scripts" / "hello-raw").write_text("#!python\nprint('raw script')\n")
    (project / "share" / "readme.txt").write_text("readme\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PIP_NO_INPUT": "1",
        "HOME": str(out_dir),
    }
    subprocess.run(
        [
            *(python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"),
            *("--disable-pip-version-check", "-q", "-w", str(out_dir), str(project)),
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    return out_dir / WHEEL_NAME

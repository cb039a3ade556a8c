"""Where things are, what an unpacked env must do, and the progress line every section says."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from devtools.fixtures.cachebuild import default_cache_dir

ROOT = Path(__file__).resolve().parents[2]

BIN = Path(sys.executable).parent
FROZEN = ROOT / "dist" / "envunpack-x86_64-linux"
BENCH_VENV = default_cache_dir() / "bench-venv"
DOCS = ROOT / "docs"
# What the env must do once unpacked: its compiled extensions and vendored libs load.
PROBE = {
    "bench": "import numpy, scipy.linalg, pandas, pyarrow, yaml, sympy, ssl, sqlite3; "
    "assert pandas.DataFrame({'a': [1, 2]}).a.sum() == 3; print(numpy.__file__)",
    "fixture": "import ssl, sqlite3, dateutil, tabulate; print(ssl.__file__)",
}
NOT_BUILT = "not built"


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def frozen_available() -> bool:
    return FROZEN.is_file() and os.access(FROZEN, os.X_OK)

"""What the frozen envunpack's runtime tells us, in one place.

PyInstaller's one-file bootloader unpacks the bundle to a temp dir (`sys._MEIPASS`); staticx
runs a copy of the program extracted to /tmp and names the file the user started in
STATICX_PROG_PATH. A self-extracting file's payload is in that file, not in the copy, and
the host's libc is not the one loaded into the process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def bundle_dir() -> Path | None:
    """The frozen bundle's directory, or None when running from a normal Python."""
    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) if bundle is not None else None


def is_frozen() -> bool:
    return bundle_dir() is not None


def static_program() -> Path | None:
    """The static (staticx) program the user started, or None when not under staticx."""
    program = os.environ.get("STATICX_PROG_PATH")
    return Path(program) if program else None


def own_executable() -> Path:
    """The file this process was started from: under staticx, the user's, not the copy.

    An app file's launcher runs a copy of the envunpack it carries and names the app file
    in ENVPACK_SELF.
    """
    app = os.environ.get("ENVPACK_SELF")
    return Path(app) if app else static_program() or Path(sys.executable)

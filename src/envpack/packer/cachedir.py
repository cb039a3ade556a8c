"""The download cache's location, checked to be usable before any download starts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from envpack.core.errors import OutputError

DEFAULT_HELP = "$XDG_CACHE_HOME/envpack/pkgs, else ~/.cache/envpack/pkgs"


def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "envpack" / "pkgs"
    home = os.environ.get("HOME") or str(Path.home())
    # System users (daemons, CI runners) often have HOME=/nonexistent; creating it, even as
    # root, would scatter a cache where nobody looks, so it is an error with the way out.
    if not Path(home).is_dir():
        raise OutputError(
            f"no usable cache directory: HOME ({home}) does not exist; pass --cache DIR"
        )
    return Path(home) / ".cache" / "envpack" / "pkgs"


def ensure_cache_dir(path: Path) -> Path:
    """Create the cache and prove it takes files; one error line naming it and --cache."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        Path(probe).unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = "it is not a directory"
        raise OutputError(
            f"cannot use the download cache {path}: {reason}; pass --cache DIR"
        ) from None
    return path

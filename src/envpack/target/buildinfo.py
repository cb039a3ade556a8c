"""What this `envunpack` was built as, for `--version`.

The frozen build writes `BUILD_INFO_NAME` into the bundle; a plain install has none and
reports "python", so a bug report tells at once which kind of binary the user ran.
"""

from envpack import __version__
from envpack.target.runtime import bundle_dir

# Written by scripts/build-unpacker at the bundle's root; one line such as "linux-64, static".
BUILD_INFO_NAME = "envpack-buildinfo.txt"
NOT_FROZEN = "python"


def build_platform() -> str:
    """The build's platform, e.g. "linux-aarch64, static", or "python" when not frozen."""
    bundle = bundle_dir()
    if bundle is None:
        return NOT_FROZEN
    try:
        text = (bundle / BUILD_INFO_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        # A frozen build without the file is a build bug, but --version must still answer.
        return "frozen"
    return text or "frozen"


def version_line(prog: str = "envunpack") -> str:
    """The one line `--version` prints: `envunpack 0.1.0 (linux-64, static)`."""
    return f"{prog} {__version__} ({build_platform()})"

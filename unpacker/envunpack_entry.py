"""Entry point that PyInstaller freezes into the static `envunpack`."""

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# Must match LAZY_EXTENSION in envunpack.spec.
LAZY_EXTENSION = "rattler/rattler.abi3.so"
LAZY_MODULE = "rattler.rattler"


class _LazyExtensionFinder(importlib.abc.MetaPathFinder):
    """Decompresses the rattler extension the first time it is imported.

    The spec ships it zstd-compressed so that a onefile start does not extract 55 MB that
    `--help` never uses. Once the file exists, the normal path finder imports it.
    """

    def __init__(self, packed: Path) -> None:
        self.packed = packed

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != LAZY_MODULE:
            return None
        sys.meta_path.remove(self)
        import zstandard

        extension = self.packed.with_suffix("")
        partial = extension.with_name(extension.name + ".part")
        with self.packed.open("rb") as src, partial.open("wb") as dst:
            zstandard.ZstdDecompressor().copy_stream(src, dst)
        # Rename last: a half-written file must never be what gets dlopen'ed.
        partial.rename(extension)
        # The path finder cached the folder's listing when the rattler package was imported.
        importlib.invalidate_caches()
        return None


def _install_lazy_extension() -> None:
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is None:
        return
    packed = Path(bundle, LAZY_EXTENSION + ".zst")
    if packed.is_file():
        sys.meta_path.insert(0, _LazyExtensionFinder(packed))


def run() -> None:
    # typer turns rich output on unless told otherwise, whether or not rich can be imported;
    # the bundle leaves rich out (megabytes and startup time), so switch it off before typer loads.
    os.environ["TYPER_USE_RICH"] = "0"
    _install_lazy_extension()

    # Before rattler is imported: it panics on a host without CA certificates (DESIGN §5).
    from envpack.certs import ensure_ca_certificates

    ensure_ca_certificates()

    from envpack.unpack_cli import main

    main()


if __name__ == "__main__":
    run()

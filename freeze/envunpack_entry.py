"""Entry point that PyInstaller freezes into the static `envunpack`."""

import importlib
import importlib.abc
import importlib.machinery
import io
import os
import sys
import threading
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from types import ModuleType

from envpack.core.elf import section as elf_section
from envpack.target.runtime import bundle_dir, static_program

# Must match LAZY_EXTENSION in envunpack.spec and the section name in freeze.sh.
LAZY_EXTENSION = "rattler/rattler.abi3.so"
LAZY_MODULE = "rattler.rattler"
LAZY_SECTION = b".envpack.rattler"
# What runs without rattler, and should not pay for decompressing it.
QUICK = {"-h", "--help", "--version", "--show-completion", "--install-completion"}


def lazy_payload(bundle: Path) -> tuple[Path, int, int] | None:
    """Where the zstd-compressed rattler extension is: (file, offset, size), or None.

    The static build keeps it in an ELF section of the outer binary, which staticx names in
    STATICX_PROG_PATH; a plain onefile build has it as a bundled file.
    """
    bundled = bundle / (LAZY_EXTENSION + ".zst")
    if bundled.is_file():
        return bundled, 0, bundled.stat().st_size
    program = static_program()
    if program is not None:
        section = elf_section(program, LAZY_SECTION)
        if section is not None:
            return program, *section
    return None


class LazyExtensionFinder(importlib.abc.MetaPathFinder):
    """Decompresses the rattler extension into the bundle the first time it is imported.

    Once the file exists, the normal path finder imports it as any other extension. With
    `ahead()`, a thread starts on it at once: zstd releases the GIL, so the ~55 MB are
    decompressed on the other core while typer and the archive's head are loaded.
    """

    def __init__(self, bundle: Path, payload: tuple[Path, int, int]) -> None:
        self.bundle = bundle
        self.payload = payload
        self.lock = threading.Lock()
        self.done = False

    def ahead(self) -> None:
        threading.Thread(target=self.decompress, daemon=True).start()

    def decompress(self) -> None:
        with self.lock:  # the import waits here for a thread that is at it
            if self.done:
                return
            import zstandard

            source, offset, size = self.payload
            with source.open("rb") as f:
                f.seek(offset)
                compressed = f.read(size)
            extension = self.bundle / LAZY_EXTENSION
            # Nothing else of rattler is a file in the bundle (its Python code is in the PYZ).
            extension.parent.mkdir(parents=True, exist_ok=True)
            partial = extension.with_name(extension.name + ".part")
            with partial.open("wb") as dst:
                zstandard.ZstdDecompressor().copy_stream(io.BytesIO(compressed), dst)
            # Rename last: a half-written file must never be what gets dlopen'ed.
            partial.rename(extension)
            self.done = True

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != LAZY_MODULE:
            return None
        sys.meta_path.remove(self)
        self.decompress()
        # The path finder cached the folder's listing when the rattler package was imported.
        importlib.invalidate_caches()
        return None


def install_lazy_extension(argv: Sequence[str] = ()) -> None:
    bundle = bundle_dir()
    if bundle is None:
        return
    payload = lazy_payload(bundle)
    if payload is not None:
        finder = LazyExtensionFinder(bundle, payload)
        sys.meta_path.insert(0, finder)
        if not QUICK.intersection(argv):  # every command but these imports rattler
            finder.ahead()


def restore_child_environment(environ: MutableMapping[str, str]) -> None:
    """Give child processes the user's LD_LIBRARY_PATH, not PyInstaller's.

    The onefile bootloader points LD_LIBRARY_PATH at its bundle (libcrypto, libexpat, ...) for
    this process; the env's python or post-link scripts we start must not load those instead of
    their own (RUNPATH loses to LD_LIBRARY_PATH). This process already has its libraries mapped
    and ld.so read the variable at start, so changing it here only affects children.
    """
    original = environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is None:
        environ.pop("LD_LIBRARY_PATH", None)
    else:
        environ["LD_LIBRARY_PATH"] = original


def run() -> None:
    # typer turns rich output on unless told otherwise, whether or not rich can be imported;
    # the bundle leaves rich out (megabytes and startup time), so switch it off before typer loads.
    os.environ["TYPER_USE_RICH"] = "0"
    install_lazy_extension(sys.argv[1:])
    if bundle_dir() is not None:
        restore_child_environment(os.environ)

    # Before rattler is imported: it panics on a host without CA certificates
    # (docs/architecture.md, "Facts").
    from envpack.target.certs import ensure_ca_certificates

    ensure_ca_certificates()

    from envpack.target.unpack_cli import main

    main()


if __name__ == "__main__":
    run()

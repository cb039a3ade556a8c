"""A stand-in for the static envunpack: a real ELF for the target, marked as ours.

Built with the C compilers scripts/test installs, carrying the ELF section by which
`envpack --create-executable` recognises an envunpack (selfextract.UNPACKER_SECTION).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from envpack.core.selfextract import UNPACKER_SECTION

_COMPILERS = {"x86_64": "gcc", "aarch64": "aarch64-linux-gnu-gcc"}
_OBJCOPY = {"x86_64": "objcopy", "aarch64": "aarch64-linux-gnu-objcopy"}
_SOURCE = '#include <stdio.h>\nint main(void) { puts("stub"); return 0; }\n'


def build_stub_unpacker(directory: Path, arch: str = "x86_64", *, marked: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "stub.c"
    source.write_text(_SOURCE)
    binary = directory / f"envunpack-{arch}-linux"
    subprocess.run([_COMPILERS[arch], "-static", "-O1", "-o", binary, source], check=True)
    if marked:
        blob = directory / "section.bin"
        blob.write_bytes(b"stub rattler\n" * 64)
        section = UNPACKER_SECTION.decode()
        subprocess.run(
            [_OBJCOPY[arch], "--add-section", f"{section}={blob}", str(binary)], check=True
        )
    binary.chmod(0o755)
    return binary

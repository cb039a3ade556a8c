"""Just enough ELF to tell what a file is: its machine, and where a named section lies.

The packer checks an --unpacker with it, and the frozen envunpack's entry point finds its
compressed rattler extension with it; both read 64-bit little-endian files only, which is
what every Linux target of ours runs.
"""

from __future__ import annotations

import struct
from pathlib import Path

MAGIC = b"\x7fELF"
_HEADER = b"\x7fELF\x02\x01"  # 64-bit, little-endian
# e_machine values (from the ELF spec) of the architectures we ship an envunpack for.
MACHINES = {62: "x86_64", 183: "aarch64"}
_SHT_NOBITS = 8  # .bss and friends: size in memory, no bytes in the file


def machine(path: Path) -> str | None:
    """The architecture of a 64-bit little-endian ELF file, 'unknown', or None if not ELF."""
    with path.open("rb") as f:
        header = f.read(20)
    if not header.startswith(_HEADER):
        return None
    (code,) = struct.unpack_from("<H", header, 18)
    return MACHINES.get(code, "unknown")


def section(path: Path, name: bytes) -> tuple[int, int] | None:
    """(offset, size) of a named section of a 64-bit little-endian ELF file, else None."""
    with path.open("rb") as f:
        header = f.read(64)
        if len(header) < 64 or not header.startswith(_HEADER):
            return None
        (table_offset,) = struct.unpack_from("<Q", header, 0x28)
        entry_size, count, names_index = struct.unpack_from("<HHH", header, 0x3A)
        if entry_size < 40 or names_index >= count:
            return None
        f.seek(table_offset)
        table = f.read(entry_size * count)
        if len(table) < entry_size * count:
            return None
        # Each entry: name offset, type, flags, address, file offset, size (Elf64_Shdr).
        entries = [struct.unpack_from("<IIQQQQ", table, i * entry_size) for i in range(count)]
        names_offset, names_size = entries[names_index][4:6]
        f.seek(names_offset)
        names = f.read(names_size)
        for name_at, _, _, _, offset, size in entries:
            if names[name_at : names.find(b"\0", name_at)] == name:
                return offset, size
    return None


def end(path: Path) -> int | None:
    """Where the ELF file's own bytes end (headers, sections, segments), else None.

    Bytes past this were appended to the program: a self-extracting file's payload.
    """
    with path.open("rb") as f:
        header = f.read(64)
        if len(header) < 64 or not header.startswith(_HEADER):
            return None
        (ph_offset, sh_offset) = struct.unpack_from("<QQ", header, 0x20)
        ph_size, ph_count, sh_size, sh_count = struct.unpack_from("<HHHH", header, 0x36)
        last: int = max(64, ph_offset + ph_size * ph_count, sh_offset + sh_size * sh_count)
        f.seek(ph_offset)
        programs = f.read(ph_size * ph_count)
        for i in range(len(programs) // max(ph_size, 1)):
            # Elf64_Phdr: type, flags, offset, vaddr, paddr, filesz, memsz, align.
            _, _, offset, _, _, filesz, _, _ = struct.unpack_from(
                "<IIQQQQQQ", programs, i * ph_size
            )
            last = max(last, offset + filesz)
        f.seek(sh_offset)
        sections = f.read(sh_size * sh_count)
        for i in range(len(sections) // max(sh_size, 1)):
            _, kind, _, _, offset, size = struct.unpack_from("<IIQQQQ", sections, i * sh_size)
            if kind != _SHT_NOBITS:
                last = max(last, offset + size)
    return last

"""envpack.core.elf: machine and section lookups on real ELF files of this host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envpack.core.elf import machine, section

PYTHON = Path(os.path.realpath(sys.executable))


def test_section_finds_named_sections(tmp_path: Path) -> None:
    text = section(PYTHON, b".text")
    assert text is not None
    offset, size = text
    assert offset > 0
    assert 0 < size < PYTHON.stat().st_size
    assert section(PYTHON, b".no-such-section") is None
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    assert section(script, b".text") is None


def test_section_survives_a_cut_file(tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    cut.write_bytes(PYTHON.read_bytes()[:200])
    assert section(cut, b".text") is None


def test_machine_of_this_host_and_of_non_elf_files(tmp_path: Path) -> None:
    assert machine(PYTHON) == os.uname().machine
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert machine(text) is None
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert machine(empty) is None


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="no cross compiler")
def test_machine_of_a_cross_compiled_binary(tmp_path: Path) -> None:
    source = tmp_path / "t.c"
    source.write_text("int main(void) { return 0; }\n")
    binary = tmp_path / "t"
    subprocess.run(["aarch64-linux-gnu-gcc", "-o", binary, source], check=True)
    assert machine(binary) == "aarch64"

"""devtools.rootfs: the Debian mirror comes from the host's apt sources or one variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.rootfs import RootfsError, debian_mirror

REPO = Path(__file__).resolve().parent.parent


def _etc(tmp_path: Path, codename: str = "bookworm") -> Path:
    etc = tmp_path / "etc"
    (etc / "apt" / "sources.list.d").mkdir(parents=True)
    (etc / "os-release").write_text(f'ID=debian\nVERSION_CODENAME="{codename}"\n')
    return etc


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVPACK_DEBIAN_MIRROR", raising=False)


def test_deb822_sources_name_the_mirror_for_this_codename(tmp_path: Path) -> None:
    etc = _etc(tmp_path)
    (etc / "apt" / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment: with a colon\nURIs: http://security.example.com/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb-src deb\nURIs: http://mirror.example.com/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert debian_mirror(etc) == "http://mirror.example.com/debian"


def test_one_line_sources_and_options(tmp_path: Path) -> None:
    etc = _etc(tmp_path, "trixie")
    (etc / "apt" / "sources.list").write_text(
        "# deb http://commented.example.com/debian trixie main\n"
        "deb-src http://src.example.com/debian trixie main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://corp.example.com/debian/ trixie main\n"
    )
    # apt ignores files with other suffixes, and so does the lookup.
    (etc / "apt" / "sources.list.d" / "old.list.disabled").write_text(
        "deb http://disabled.example.com/debian trixie main\n"
    )
    assert debian_mirror(etc) == "http://corp.example.com/debian"


def test_the_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVPACK_DEBIAN_MIRROR", "http://override.example.com/debian")
    assert debian_mirror(_etc(tmp_path)) == "http://override.example.com/debian"


def test_no_mirror_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    etc = _etc(tmp_path)
    (etc / "apt" / "sources.list").write_text("deb http://ubuntu.example.com/ubuntu noble main\n")
    with pytest.raises(RootfsError) as info:
        debian_mirror(etc)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("no Debian mirror for bookworm in ")
    assert message.endswith("set ENVPACK_DEBIAN_MIRROR to one")


def test_the_command_prints_the_mirror_or_one_error_line() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "devtools.rootfs", "--mirror"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"ENVPACK_DEBIAN_MIRROR": "http://x.example.com/debian", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "http://x.example.com/debian\n", "")

"""The `envunpack` command line as a user meets it: guards, --check, --list, hints, signals."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envpack.target.unpack_cli import SHELL_NAMES
from tests.clirun import BIN, assert_one_error_line, interrupt_mid_pipe, run_cli


def _flip_in_a_package(archive: Path, dest: Path) -> Path:
    """A plain-tar copy with one byte changed inside the biggest package's data."""
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x40
    dest.write_bytes(bytes(data))
    return dest


def test_shell_names_match_the_activation_table() -> None:
    from envpack.target.activation import SHELLS

    assert tuple(SHELLS) == SHELL_NAMES


# --- nothing of the user's is replaced, nothing is created before the head is checked ---------


@pytest.mark.parametrize("name", ["activate.sh", "deactivate.sh"])
def test_users_own_activation_script_needs_force(
    archives: dict[str, Path], tmp_path: Path, name: str
) -> None:
    out = tmp_path / "app"
    out.mkdir()
    mine = out / name
    mine.write_text("echo my own script\n")
    result = run_cli("envunpack", archives["zstd"], "-o", out, "-q")
    assert_one_error_line(result, str(mine), "--force")
    assert mine.read_text() == "echo my own script\n"
    assert sorted(p.name for p in out.iterdir()) == [name]
    forced = run_cli("envunpack", archives["zstd"], "-o", out, "-q", "--force")
    assert forced.returncode == 0, forced.stderr.decode()
    assert "written by envunpack" in mine.read_text()


def test_own_scripts_of_a_removed_env_are_replaced_without_force(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "app"
    assert run_cli("envunpack", archives["zstd"], "-o", out, "-q").returncode == 0
    subprocess.run(["rm", "-rf", str(out / "env")], check=True)
    again = run_cli("envunpack", archives["zstd"], "-o", out, "-q")
    assert again.returncode == 0, again.stderr.decode()
    # Scripts written for another env path are not ours to replace.
    other = tmp_path / "other"
    other.mkdir()
    (other / "activate.sh").write_bytes((out / "activate.sh").read_bytes())
    assert_one_error_line(run_cli("envunpack", archives["zstd"], "-o", other, "-q"), "--force")


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"\x1f\x8b\x08\x00" + bytes(600), "gzip"),
        (b"PK\x03\x04" + bytes(600), "zip"),
        (b"\x7fELF\x02\x01\x01" + bytes(600), "ELF"),
        (b"name: my-env\ndependencies:\n  - python\n", "text file"),
    ],
)
def test_foreign_files_say_what_they_are_and_create_nothing(
    tmp_path: Path, content: bytes, looks_like: str
) -> None:
    thing = tmp_path / "thing.tar"
    thing.write_bytes(content)
    out = tmp_path / "not" / "yet"
    assert_one_error_line(run_cli("envunpack", thing, "-o", out), looks_like)
    assert not (tmp_path / "not").exists()


def test_other_platform_creates_nothing_at_the_destination(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "fresh" / "app"
    assert_one_error_line(run_cli("envunpack", archives["aarch64"], "-o", out), "linux-aarch64")
    assert not (tmp_path / "fresh").exists()


def test_stdin_that_is_a_terminal_is_refused_at_once(tmp_path: Path) -> None:
    main, secondary = pty.openpty()
    out = tmp_path / "app"
    try:
        result = subprocess.run(
            [str(BIN / "envunpack"), "-", "-o", str(out)],
            stdin=secondary,
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(main)
        os.close(secondary)
    assert_one_error_line(result, "terminal")
    assert result.returncode == 2
    assert not out.exists()


# --- --check and --list ------------------------------------------------------------------


def test_check_verifies_and_writes_nothing(archives: dict[str, Path], tmp_path: Path) -> None:
    before = sorted(tmp_path.iterdir())
    result = run_cli("envunpack", "--check", archives["zstd"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert "verified" in result.stderr.decode()
    assert sorted(tmp_path.iterdir()) == before
    doc = json.loads(run_cli("envunpack", "--check", "--json", archives["none"]).stdout)
    assert doc["command"] == "check" and doc["verified"] is True
    assert doc["packages"] + doc["wheels"] == len(doc["artifacts"])


def test_check_fails_on_corruption_truncation_and_platform(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    bad = _flip_in_a_package(archives["none"], tmp_path / "bad.tar")
    assert_one_error_line(run_cli("envunpack", "--check", bad), "sha256")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archives["zstd"].read_bytes()[:-5000])
    result = run_cli("envunpack", "--check", cut)
    assert_one_error_line(result, "truncated")
    assert result.returncode == 1
    assert_one_error_line(run_cli("envunpack", "--check", archives["aarch64"]), "linux-aarch64")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar", "cut.tar"]


def test_list_is_aligned_totals_and_says_it_did_not_verify(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archives["zstd"].read_bytes()[:-5000])
    for archive in (archives["zstd"], cut):
        result = run_cli("envunpack", "--list", archive)
        assert result.returncode == 0, result.stderr.decode()
        lines = result.stdout.decode().splitlines()
        rows = [line for line in lines if line.startswith("  ")]
        assert len({line.rindex(" MB") for line in rows}) == 1  # sizes end in one column
        assert "needs __glibc" in lines[-1] and "MB" in lines[-1]
        assert "--check" in result.stderr.decode()
    doc = json.loads(run_cli("envunpack", "--list", "--json", archives["zstd"]).stdout)
    assert doc["command"] == "list" and doc["verified"] is False
    assert doc["total_size"] == sum(a["size"] for a in doc["artifacts"])


def test_list_and_check_exclude_each_other(archives: dict[str, Path]) -> None:
    result = run_cli("envunpack", "--list", "--check", archives["zstd"])
    assert_one_error_line(result, "--list", "--check")
    assert result.returncode == 2


# --- hints and the json of an unpack ------------------------------------------------------


def test_hint_quotes_paths_and_fish_uses_source(archives: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "my app"
    result = run_cli("envunpack", archives["zstd"], "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    assert f". '{out}/activate.sh'" in result.stderr.decode()
    fish = run_cli("envunpack", archives["zstd"], "-o", tmp_path / "f", "--shell", "fish")
    assert fish.returncode == 0, fish.stderr.decode()
    assert f"source {tmp_path}/f/activate.fish" in fish.stderr.decode()


def test_unpack_json_shares_the_schema(archives: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli("envunpack", archives["zstd"], "-o", tmp_path / "a", "--json")
    doc = json.loads(result.stdout)
    assert doc["command"] == "unpack"
    assert {"platform", "environment", "artifacts", "total_size", "prefix"} <= doc.keys()
    assert doc["packages"] + doc["wheels"] == len(doc["artifacts"])


def test_usage_errors_exit_2(archives: dict[str, Path], tmp_path: Path) -> None:
    for args in (["--env-name", "../x"], ["--shell", "tcsh"], ["--nope"]):
        result = run_cli("envunpack", archives["zstd"], "-o", tmp_path / "u", *args)
        assert_one_error_line(result)
        assert result.returncode == 2, (args, result.stderr)
    assert not (tmp_path / "u").exists()


def test_help_is_plain_and_fits_80_columns() -> None:
    result = run_cli("envunpack", "--help", env={"COLUMNS": "80"})
    text = result.stdout.decode()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "Archive made by envpack or pixi-pack" in " ".join(text.split())
    assert "  --check" in text and "  --execute-link-scripts" in text
    assert "─" not in text and "--no-" not in text


# --- signals: the staging dir goes, whichever signal and whenever ------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_unpack_cleans_up_and_says_interrupted(
    archives: dict[str, Path], tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """Half the archive through a pipe, then the signal while envunpack waits for the rest."""
    out = tmp_path / "app"
    sent = time.monotonic()
    code_seen, last = interrupt_mid_pipe(BIN / "envunpack", archives["none"], out, sig)
    assert code_seen == code
    assert time.monotonic() - sent < 65
    assert last == "error: interrupted"
    assert not out.exists()  # it created DIR, so it removed DIR


def test_python_is_the_one_under_test() -> None:
    assert Path(sys.executable).parent == BIN

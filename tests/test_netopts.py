"""The download-side options as envpack's command line takes them: named in --help, and
out-of-range values refused with one line before anything is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clirun import assert_one_error_line, run_cli


def test_help_names_every_download_option() -> None:
    result = run_cli("envpack", "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    text = result.stdout.decode()
    for option in ("--concurrency", "--config", "--mirror", "--auth-file", "--retries"):
        assert option in text
    assert "concurrency.downloads, else 50" in text
    assert "Seconds without data before a download is retried" in text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--concurrency", "0"), "--concurrency"),
        (("--concurrency", "65"), "--concurrency"),
        (("--retries", "21"), "--retries"),
        (("--timeout", "0"), "--timeout"),
    ],
)
def test_out_of_range_values_are_one_line(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    result = run_cli("envpack", tmp_path, "-o", tmp_path / "out.tar", *args)
    assert_one_error_line(result, needle)
    assert not (tmp_path / "out.tar").exists()

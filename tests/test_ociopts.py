"""ociopts: the --oci-image and --mount-from options' defaults and their misuse, one
message each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envpack.core.errors import UsageError
from envpack.packer.ociopts import (
    DEFAULT_DEST,
    _words,
    check_not_image,
    default_output,
    mount_sources,
)
from tests.clirun import assert_one_error_line, run_cli


def test_default_outputs_follow_pixi_pack() -> None:
    assert default_output(False, False, False) == "environment.tar"
    assert default_output(False, True, False) == "environment.sh"
    assert default_output(False, False, True) == "environment"
    assert default_output(True, False, False) == "sbom.cdx.json"


def test_shell_words() -> None:
    assert _words("--cmd", "python -m 'http.server' 8000") == (
        "python",
        "-m",
        "http.server",
        "8000",
    )
    assert _words("--cmd", None) is None
    with pytest.raises(UsageError, match="--cmd is empty"):
        _words("--cmd", "  ")
    with pytest.raises(UsageError, match="--entrypoint 'a \"b': No closing quotation"):
        _words("--entrypoint", 'a "b')


@pytest.mark.parametrize(
    ("dest", "base", "cmd", "named"),
    [
        ("/opt/env", None, None, "--dest-prefix"),
        (DEFAULT_DEST, "b.tar", None, "--base"),
        (DEFAULT_DEST, None, "x", "--cmd"),
    ],
)
def test_image_options_need_oci_image(
    dest: str, base: str | None, cmd: str | None, named: str
) -> None:
    with pytest.raises(UsageError, match=f"^{named} only makes sense with --oci-image$"):
        check_not_image(dest, base, cmd)


def test_no_image_options_pass() -> None:
    check_not_image(DEFAULT_DEST, None, None)


def test_mount_from_names_repositories_of_the_pushed_to_registry() -> None:
    out = "oci://reg.example:5000/team/env:v2"
    assert mount_sources(None, out) == ()
    given = ["team/env-v1", "oci://reg.example:5000/base/bookworm"]
    assert mount_sources(given, out) == ("team/env-v1", "base/bookworm")


@pytest.mark.parametrize(
    ("given", "output", "message"),
    [
        ("team/env", "env.tar", "--mount-from is for -o oci://… only"),
        ("team/env", None, "--mount-from is for -o oci://… only"),
        ("oci://other.example/team/env", "oci://reg.example/a:1", "on other.example, not on"),
        ("team/env:v1", "oci://reg.example/a:1", "without a tag or digest"),
        ("oci://reg.example/team/env:v1", "oci://reg.example/a:1", "without a tag or digest"),
        ("Team/Env", "oci://reg.example/a:1", "invalid registry reference"),
    ],
)
def test_mount_from_misuse_is_one_message(given: str, output: str | None, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        mount_sources([given], output)


def test_mount_from_misuse_through_the_cli_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "env.tar"
    result = run_cli("envpack", tmp_path, "-o", out, "--mount-from", "team/env")
    assert_one_error_line(result, "--mount-from is for -o oci://… only")
    other = ("--mount-from", "oci://elsewhere.example/team/env")
    result = run_cli("envpack", tmp_path, "-o", "oci://127.0.0.1:9/a/b:1", *other)
    assert_one_error_line(result, "--mount-from oci://elsewhere.example/team/env: on elsewhere")
    assert list(tmp_path.iterdir()) == []

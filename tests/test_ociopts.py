"""ociopts: the --oci-image options' defaults and their misuse, one message each."""

from __future__ import annotations

import pytest

from envpack.core.errors import UsageError
from envpack.packer.ociopts import DEFAULT_DEST, _words, check_not_image, default_output


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

"""errors: the exit codes of each failure kind and the wording of OS and library errors."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import rattler

from envpack.core import errors
from envpack.core.errors import EnvpackError, OutputError, UsageError, cause_text, output_error


def test_every_failure_kind_is_an_envpack_error_with_its_exit_code() -> None:
    kinds = [
        getattr(errors, name)
        for name in dir(errors)
        if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), Exception)
    ]
    assert len(kinds) >= 10
    for kind in kinds:
        assert issubclass(kind, EnvpackError)
        expected = 2 if issubclass(kind, UsageError) else 1
        assert kind("x").exit_code == expected, kind
    # A hash mismatch is a failed download to everyone who catches FetchError.
    assert issubclass(errors.HashMismatchError, errors.FetchError)


def test_output_error_for_a_full_device_says_to_free_space() -> None:
    with pytest.raises(OSError) as info, Path("/dev/full").open("wb") as full:
        full.write(b"x" * 65536)
        full.flush()
    err = output_error(Path("/dev/full"), info.value, "writing")
    assert isinstance(err, OutputError)
    assert str(err) == "no space left on the device writing /dev/full; free some space"


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS])
def test_output_error_for_permissions_names_the_path_and_reason(code: int) -> None:
    exc = OSError(code, "the reason")
    assert str(output_error(Path("/x/y"), exc, "writing")) == "cannot write /x/y: the reason"


def test_output_error_otherwise_says_what_was_being_done(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info:
        (tmp_path / "missing" / "file").write_bytes(b"")
    err = output_error(tmp_path / "out", info.value, "creating")
    assert str(err) == f"failed creating {tmp_path / 'out'}: No such file or directory"
    bare = OSError("no errno at all")
    assert (
        str(output_error(tmp_path, bare, "reading"))
        == f"failed reading {tmp_path}: no errno at all"
    )


def test_cause_text_keeps_each_clause_once() -> None:
    exc = RuntimeError(
        "invalid zip archive: invalid Zip archive: bad header\nCaused by: bad header\x00!"
    )
    assert cause_text(exc) == "invalid zip archive: bad header: bad header !"


def test_cause_text_of_a_real_rattler_error_is_one_line() -> None:
    with pytest.raises(Exception) as info:
        rattler.MatchSpec("python >=3.1,,<<")
    text = cause_text(info.value)
    assert text
    assert "\n" not in text
    assert "Caused by" not in text


def test_cause_text_cuts_long_messages_and_names_empty_ones() -> None:
    assert cause_text(ValueError("a " * 400), limit=50) == ("a " * 24)[:47] + "..."
    assert len(cause_text(ValueError("word " * 400))) == 300
    assert cause_text(ValueError("")) == "ValueError"

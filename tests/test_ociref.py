"""oci:// references and the media types of an envpack artifact: pure parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envpack.core.errors import UsageError
from envpack.core.ociref import ENV_ARTIFACT_TYPE, OciRef, is_oci, media_type, parse_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci://127.0.0.1:5000/env:v1", OciRef("127.0.0.1:5000", "env", "v1", None)),
        ("oci://ghcr.io/team/sub/env", OciRef("ghcr.io", "team/sub/env", "latest", None)),
        ("oci://localhost/a_b-c.d:1.0-rc_2", OciRef("localhost", "a_b-c.d", "1.0-rc_2", None)),
        (
            "oci://r.example/env@sha256:" + "a" * 64,
            OciRef("r.example", "env", None, "sha256:" + "a" * 64),
        ),
        (
            "oci://r.example/env:v1@sha256:" + "b" * 64,
            OciRef("r.example", "env", "v1", "sha256:" + "b" * 64),
        ),
    ],
)
def test_parse_ref(text: str, expected: OciRef) -> None:
    ref = parse_ref(text)
    assert ref == expected
    assert parse_ref(str(ref)) == ref
    assert ref.reference == (expected.digest or expected.tag)


@pytest.mark.parametrize(
    "text",
    [
        "oci://",
        "oci://host",
        "oci://host/",
        "oci://host/Upper",
        "oci://host/env:",
        "oci://host/env:-bad",
        "oci://host/env@sha256:short",
        "oci://host//env",
        "oci://host/env:v1 extra",
        "docker://host/env",
    ],
)
def test_bad_refs_say_the_expected_shape(text: str) -> None:
    with pytest.raises(UsageError, match=r"expected oci://HOST\[:PORT\]/REPOSITORY\[:TAG\]"):
        parse_ref(text)


def test_a_password_in_a_ref_is_not_echoed() -> None:
    with pytest.raises(UsageError) as info:
        parse_ref("oci://alice:s3cret@host/env:v1")
    assert "s3cret" not in str(info.value) and "alice" not in str(info.value)
    assert "oci://***@host/env:v1" in str(info.value)


@given(st.text(max_size=80))
def test_any_text_parses_or_is_a_usage_error(text: str) -> None:
    for candidate in (text, "oci://" + text):
        try:
            ref = parse_ref(candidate)
        except UsageError as exc:
            assert "\n" not in str(exc)
        else:
            assert is_oci(candidate) and parse_ref(str(ref)) == ref


def test_media_types() -> None:
    assert media_type("channel/linux-64/a-1-0.conda") == "application/vnd.conda.package.v2"
    assert media_type("channel/noarch/a-1-0.tar.bz2") == "application/vnd.conda.package.v1"
    assert media_type("pypi/a-1-py3-none-any.whl").startswith("application/vnd.envpack.wheel")
    assert media_type("channel/linux-64/repodata.json") == "application/json"
    assert media_type("environment.yml") == "application/octet-stream"
    assert ENV_ARTIFACT_TYPE.startswith("application/vnd.envpack.")
    assert not is_oci(None) and not is_oci("env.tar") and is_oci("oci://h/r")

"""URL helpers: hiding credentials, mirrors, pixi config."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envpack.packer.urls import redact, redact_text, strip_credentials

CF = "https://conda.anaconda.org/conda-forge"


# --- redact ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://repo.example.com/t/tk-abc123/conda-forge/linux-64/x.conda",
            "https://repo.example.com/t/***/conda-forge/linux-64/x.conda",
        ),
        ("https://user:pass@host.example/x.conda", "https://***@host.example/x.conda"),
        ("https://user@host.example:8443/x.conda", "https://***@host.example:8443/x.conda"),
        (
            "https://user:pw@host.example/t/tok/ch/x.conda",
            "https://***@host.example/t/***/ch/x.conda",
        ),
        (f"{CF}/linux-64/x.conda", f"{CF}/linux-64/x.conda"),
        ("file:///home/me/pkgs/x.conda", "file:///home/me/pkgs/x.conda"),
        ("./local/x.whl", "./local/x.whl"),
    ],
)
def test_redact(url: str, expected: str) -> None:
    assert redact(url) == expected


secret_chars = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"),
    min_size=8,
    max_size=30,
)


@settings(max_examples=300)
@given(secret_chars, secret_chars, secret_chars, st.sampled_from(["http", "https"]))
def test_redact_never_shows_secrets(user: str, password: str, token: str, scheme: str) -> None:
    for url in (
        f"{scheme}://{user}:{password}@repo.example.com/t/{token}/ch/noarch/x.conda",
        f"{scheme}://repo.example.com/t/{token}/ch/noarch/x.conda",
        f"{scheme}://{user}:{password}@repo.example.com:8080/ch/noarch/x.conda",
    ):
        shown = redact(url)
        assert password not in shown
        assert token not in shown
        assert "repo.example.com" in shown
        assert shown.endswith("/ch/noarch/x.conda")


# --- strip_credentials ------------------------------------------------------------------------


def test_strip_credentials_plain_url() -> None:
    url = f"{CF}/linux-64/x.conda"
    assert strip_credentials(url) == (url, None, None)


def test_strip_credentials_token() -> None:
    assert strip_credentials("https://h.example/t/TOK/ch/linux-64/x.conda") == (
        "https://h.example/ch/linux-64/x.conda",
        None,
        "TOK",
    )


def test_strip_credentials_basic() -> None:
    assert strip_credentials("https://al:pw@h.example:444/ch/x.conda") == (
        "https://h.example:444/ch/x.conda",
        ("al", "pw"),
        None,
    )


def test_strip_credentials_user_without_password() -> None:
    assert strip_credentials("https://al@h.example/x") == ("https://h.example/x", ("al", ""), None)


def test_strip_credentials_both() -> None:
    clean, basic, token = strip_credentials("https://a:b@h.example/t/T/ch/x.conda")
    assert (clean, basic, token) == ("https://h.example/ch/x.conda", ("a", "b"), "T")


@settings(max_examples=300)
@given(secret_chars, secret_chars, secret_chars)
def test_strip_credentials_leaves_no_secret(user: str, password: str, token: str) -> None:
    clean, basic, found = strip_credentials(
        f"https://{user}:{password}@repo.example.com/t/{token}/ch/x.conda"
    )
    assert (basic, found) == ((user, password), token)
    assert clean == "https://repo.example.com/ch/x.conda"


def test_redact_text_hides_every_url_secret_and_query() -> None:
    text = 'bad "https://u:pw@h.example/t/TOK/x?X-Amz-Signature=s1g" and (s3://b/k?sig=2)'
    shown = redact_text(text)
    for secret in ("pw", "TOK", "s1g", "sig=2"):
        assert secret not in shown
    assert "https://***@h.example/t/***/x" in shown and "s3://b/k" in shown

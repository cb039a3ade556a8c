"""URL helpers: hiding credentials, mirrors, pixi config."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envpack.urls import apply_mirrors, parse_mirror, pixi_config_mirrors, redact, strip_credentials

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


# --- mirrors ---------------------------------------------------------------------------------


def test_apply_mirrors_longest_prefix_wins() -> None:
    mirrors = {
        "https://conda.anaconda.org": "https://generic.mirror/anaconda",
        CF: "https://cf.mirror/cf",
        "https://conda.anaconda.org/conda-forge/linux-64": "https://linux.mirror/l64/",
    }
    assert apply_mirrors(f"{CF}/linux-64/x.conda", mirrors) == "https://linux.mirror/l64/x.conda"
    assert apply_mirrors(f"{CF}/noarch/y.conda", mirrors) == "https://cf.mirror/cf/noarch/y.conda"
    assert (
        apply_mirrors("https://conda.anaconda.org/bioconda/noarch/z.conda", mirrors)
        == "https://generic.mirror/anaconda/bioconda/noarch/z.conda"
    )


def test_apply_mirrors_order_does_not_matter() -> None:
    url = f"{CF}/linux-64/x.conda"
    forward = {"https://conda.anaconda.org/": "https://a/", f"{CF}/": "https://b/"}
    backward = dict(reversed(list(forward.items())))
    assert (
        apply_mirrors(url, forward) == apply_mirrors(url, backward) == "https://b/linux-64/x.conda"
    )


def test_apply_mirrors_matches_whole_path_segments() -> None:
    # conda-forge must not catch conda-forge-extra.
    mirrors = {CF: "https://cf.mirror"}
    url = "https://conda.anaconda.org/conda-forge-extra/noarch/x.conda"
    assert apply_mirrors(url, mirrors) == url


def test_apply_mirrors_no_match_and_no_mirrors() -> None:
    url = "https://pypi.example/x.whl"
    assert apply_mirrors(url, {CF: "https://cf.mirror"}) == url
    assert apply_mirrors(url, {}) == url


@pytest.mark.parametrize("slash_original", ["", "/"])
@pytest.mark.parametrize("slash_mirror", ["", "/"])
def test_apply_mirrors_trailing_slashes(slash_original: str, slash_mirror: str) -> None:
    mirrors = {CF + slash_original: "http://127.0.0.1:8000/cf" + slash_mirror}
    assert (
        apply_mirrors(f"{CF}/noarch/x.conda", mirrors) == "http://127.0.0.1:8000/cf/noarch/x.conda"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{CF}=https://m.example/cf", (CF, "https://m.example/cf")),
        (f" {CF} = https://m.example/cf ", (CF, "https://m.example/cf")),
        ("https://a=https://b?x=1", ("https://a", "https://b?x=1")),  # first '=' splits
    ],
)
def test_parse_mirror(text: str, expected: tuple[str, str]) -> None:
    assert parse_mirror(text) == expected


@pytest.mark.parametrize(
    "text", ["", "no-equals-sign", "=https://m", "https://o=", " = ", "=", "a= "]
)
def test_parse_mirror_errors(text: str) -> None:
    with pytest.raises(ValueError, match="ORIGINAL=MIRROR") as info:
        parse_mirror(text)
    assert repr(text) in str(info.value)


# --- pixi config -----------------------------------------------------------------------------


def test_pixi_config_mirrors(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
default-channels = ["conda-forge"]

[mirrors]
"{CF}" = ["https://prefix.dev/conda-forge", "https://second.example/cf"]
"https://repo.anaconda.com/pkgs/main" = ["https://mirror.example/main"]
"https://empty.example" = []
"https://wrong.example" = "not-a-list"

[repodata-config]
disable-jlap = true
"""
    )
    assert pixi_config_mirrors([config]) == {
        CF: "https://prefix.dev/conda-forge",
        "https://repo.anaconda.com/pkgs/main": "https://mirror.example/main",
    }


def test_pixi_config_later_files_override_earlier(tmp_path: Path) -> None:
    system = tmp_path / "system.toml"
    user = tmp_path / "user.toml"
    system.write_text(f'[mirrors]\n"{CF}" = ["https://system/cf"]\n"https://x" = ["https://sx"]\n')
    user.write_text(f'[mirrors]\n"{CF}" = ["https://user/cf"]\n')
    assert pixi_config_mirrors([system, user]) == {CF: "https://user/cf", "https://x": "https://sx"}


def test_pixi_config_missing_invalid_or_without_mirrors(tmp_path: Path) -> None:
    invalid = tmp_path / "invalid.toml"
    invalid.write_text("[mirrors\nthis is not toml")
    no_mirrors = tmp_path / "plain.toml"
    no_mirrors.write_text('default-channels = ["conda-forge"]\n')
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('mirrors = "x"\n')
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    paths = [tmp_path / "missing.toml", invalid, no_mirrors, wrong_type, binary, tmp_path]
    assert pixi_config_mirrors(paths) == {}


def test_pixi_config_mirrors_feed_apply_mirrors(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[mirrors]\n"{CF}" = ["https://prefix.dev/conda-forge"]\n')
    url = f"{CF}/linux-64/python-3.12.0-h0_0.conda"
    assert (
        apply_mirrors(url, pixi_config_mirrors([config]))
        == "https://prefix.dev/conda-forge/linux-64/python-3.12.0-h0_0.conda"
    )

"""The client envpack builds from pixi's config, `-c`, `--auth-file` and `--mirror`, checked by
what reaches a real server on 127.0.0.1: headers, paths, and which server was asked at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from devtools.httpserver import FaultServer
from envpack.core.errors import FetchError
from envpack.core.models import Artifact, Download
from envpack.core.progress import SilentReporter
from envpack.packer.fetch import Cache, Fetched, Fetcher, FetchOptions
from envpack.packer.netconfig import (
    NetworkConfigError,
    NetworkOptions,
    download_concurrency,
    load_config,
    make_client,
    parse_mirror,
)

SECRET = "n3t-c0nfig-S3CRET-41"
CF = "https://conda.anaconda.org/conda-forge"
FAST = FetchOptions(attempts=2, timeout=2, backoff=0.001, backoff_max=0.001)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of our own, so the developer's netrc, pixi config and credentials stay out."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RATTLER_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


def _artifact(data: bytes, name: str = "pkg") -> Artifact:
    return Artifact(
        kind="conda",
        name=name,
        version="1.0",
        build="h0_0",
        filename=f"{name}-1.0-h0_0.conda",
        subdir="linux-64",
        sha256=hashlib.sha256(data).hexdigest(),
        md5=None,
        size=len(data),
    )


def _fetch(tmp_path: Path, url: str, data: bytes, **network: object) -> Fetched:
    client = make_client(load_config(NetworkOptions(default_locations=False, **network)))  # type: ignore[arg-type]
    fetcher = Fetcher(Cache(tmp_path / "cache"), client, SilentReporter(), FAST)
    return fetcher.fetch(Download(_artifact(data), url))


def _auth_file(tmp_path: Path, entry: dict[str, object], host: str = "127.0.0.1") -> Path:
    path = tmp_path / f"auth-{len(list(tmp_path.glob('auth-*')))}.json"
    path.write_text(json.dumps({host: entry}))
    return path


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- credentials ---------------------------------------------------------------------------


def test_bearer_token_from_auth_file(tmp_path: Path) -> None:
    with FaultServer({"/x.conda": b"payload"}) as server:
        auth = _auth_file(tmp_path, {"BearerToken": SECRET})
        _fetch(tmp_path, server.url("/x.conda"), b"payload", auth_file=auth)
        (request,) = server.requests
    assert request.headers.get("Authorization") == f"Bearer {SECRET}"
    assert request.path == "/x.conda"


def test_conda_token_from_auth_file(tmp_path: Path) -> None:
    with FaultServer({f"/t/{SECRET}/linux-64/x.conda": b"payload"}) as server:
        auth = _auth_file(tmp_path, {"CondaToken": SECRET})
        _fetch(tmp_path, server.url("/linux-64/x.conda"), b"payload", auth_file=auth)
        (request,) = server.requests
    assert request.path == f"/t/{SECRET}/linux-64/x.conda"
    assert "Authorization" not in request.headers


def test_basic_http_from_auth_file(tmp_path: Path) -> None:
    with FaultServer({"/x.conda": b"payload"}) as server:
        auth = _auth_file(tmp_path, {"BasicHTTP": {"username": "alice", "password": SECRET}})
        _fetch(tmp_path, server.url("/x.conda"), b"payload", auth_file=auth)
        (request,) = server.requests
    assert request.headers.get("Authorization") == _basic("alice", SECRET)


def test_auth_file_for_another_host_is_not_sent(tmp_path: Path) -> None:
    with FaultServer({"/x.conda": b"payload"}) as server:
        auth = _auth_file(tmp_path, {"BearerToken": SECRET}, host="example.com")
        _fetch(tmp_path, server.url("/x.conda"), b"payload", auth_file=auth)
        (request,) = server.requests
    assert "Authorization" not in request.headers


def test_rattler_auth_file_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATTLER_AUTH_FILE", str(_auth_file(tmp_path, {"BearerToken": "env"})))
    with FaultServer({"/x.conda": b"payload"}) as server:
        _fetch(tmp_path, server.url("/x.conda"), b"payload")
        # --auth-file takes its place.
        flag = _auth_file(tmp_path, {"BearerToken": "flag"})
        _fetch(tmp_path / "2", server.url("/x.conda"), b"payload", auth_file=flag)
        first, second = server.requests
    assert first.headers.get("Authorization") == "Bearer env"
    assert second.headers.get("Authorization") == "Bearer flag"


def test_netrc_in_home(tmp_path: Path, _isolated: Path) -> None:
    netrc = _isolated / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login bob password {SECRET}\n")
    netrc.chmod(0o600)
    with FaultServer({"/x.conda": b"payload"}) as server:
        _fetch(tmp_path, server.url("/x.conda"), b"payload")
        (request,) = server.requests
    assert request.headers.get("Authorization") == _basic("bob", SECRET)


def test_url_credentials_win_over_auth_file(tmp_path: Path) -> None:
    with FaultServer({"/x.conda": b"payload"}) as server:
        auth = _auth_file(tmp_path, {"BearerToken": "from-file"})
        url = f"http://bob:pw@127.0.0.1:{server.port}/x.conda"
        _fetch(tmp_path, url, b"payload", auth_file=auth)
        (request,) = server.requests
    assert request.headers.get("Authorization") == _basic("bob", "pw")


@pytest.mark.parametrize("content", [None, "not json", "[1, 2]"], ids=["missing", "bad", "list"])
def test_bad_auth_file_is_one_clear_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "auth.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(NetworkConfigError, match=r"auth.json") as info:
        make_client(load_config(NetworkOptions(auth_file=path, default_locations=False)))
    assert "\n" not in str(info.value)


# --- mirrors -------------------------------------------------------------------------------


def test_mirror_option_redirects_whole_segments_only(tmp_path: Path) -> None:
    with FaultServer({"/cf/linux-64/x.conda": b"mirrored"}) as server:
        mirrors = ((f"{CF}/", server.url("/cf")),)
        _fetch(tmp_path, f"{CF}/linux-64/x.conda", b"mirrored", mirrors=mirrors)
        assert [r.path for r in server.requests] == ["/cf/linux-64/x.conda"]
        # conda-forge must not catch conda-forge-extra: that one goes to the real (absent) host.
        with pytest.raises(FetchError):
            _fetch(tmp_path / "2", f"{CF}-extra/linux-64/x.conda", b"mirrored", mirrors=mirrors)
        assert len(server.requests) == 1


def test_longest_mirror_prefix_wins(tmp_path: Path) -> None:
    with FaultServer({"/l64/x.conda": b"narrow", "/cf/noarch/y.conda": b"wide"}) as server:
        mirrors = ((CF, server.url("/cf")), (f"{CF}/linux-64", server.url("/l64")))
        _fetch(tmp_path, f"{CF}/linux-64/x.conda", b"narrow", mirrors=mirrors)
        _fetch(tmp_path, f"{CF}/noarch/y.conda", b"wide", mirrors=mirrors)
        assert sorted(r.path for r in server.requests) == ["/cf/noarch/y.conda", "/l64/x.conda"]


def test_mirrors_from_config_files_and_precedence(tmp_path: Path, _isolated: Path) -> None:
    with FaultServer({"/user/noarch/x.conda": b"u", "/flag/noarch/x.conda": b"u"}) as server:
        global_config = _isolated / ".pixi" / "config.toml"
        global_config.parent.mkdir()
        global_config.write_text(f'[mirrors]\n"{CF}/" = ["{server.url("/global")}/"]\n')
        user = tmp_path / "user.toml"
        user.write_text(f'[mirrors]\n"{CF}/" = ["{server.url("/user")}/"]\n')
        url = f"{CF}/noarch/x.conda"
        client = make_client(load_config(NetworkOptions(config_files=(user,))))
        Fetcher(Cache(tmp_path / "c1"), client, SilentReporter(), FAST).fetch(
            Download(_artifact(b"u"), url)
        )
        # --mirror beats every file.
        flag = ((CF, server.url("/flag")),)
        client = make_client(load_config(NetworkOptions(config_files=(user,), mirrors=flag)))
        Fetcher(Cache(tmp_path / "c2"), client, SilentReporter(), FAST).fetch(
            Download(_artifact(b"u"), url)
        )
        assert [r.path for r in server.requests] == ["/user/noarch/x.conda", "/flag/noarch/x.conda"]


def test_global_pixi_config_applies(tmp_path: Path, _isolated: Path) -> None:
    with FaultServer({"/g/noarch/x.conda": b"g"}) as server:
        config = _isolated / ".pixi" / "config.toml"
        config.parent.mkdir()
        config.write_text(f'[mirrors]\n"{CF}/" = ["{server.url("/g")}/"]\n')
        client = make_client(load_config(NetworkOptions()))
        Fetcher(Cache(tmp_path / "c"), client, SilentReporter(), FAST).fetch(
            Download(_artifact(b"g"), f"{CF}/noarch/x.conda")
        )
        assert [r.path for r in server.requests] == ["/g/noarch/x.conda"]


def test_project_config_applies(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".pixi").mkdir(parents=True)
    with FaultServer({"/p/noarch/x.conda": b"p"}) as server:
        (project / ".pixi" / "config.toml").write_text(
            f'[mirrors]\n"{CF}/" = ["{server.url("/p")}/"]\n'
        )
        client = make_client(load_config(NetworkOptions(project_dir=project)))
        Fetcher(Cache(tmp_path / "c"), client, SilentReporter(), FAST).fetch(
            Download(_artifact(b"p"), f"{CF}/noarch/x.conda")
        )
        assert [r.path for r in server.requests] == ["/p/noarch/x.conda"]


# --- bad config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("tls-no-verify = [\n", "unclosed array"),
        ('tls-no-verify = "yes"\n', "expected a boolean"),
        ("[mirrors]\nx = 3\n", "relative URL"),
    ],
)
def test_malformed_config_names_the_file(tmp_path: Path, text: str, reason: str) -> None:
    good = tmp_path / "good.toml"
    good.write_text("tls-no-verify = false\n")
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(NetworkConfigError) as info:
        load_config(NetworkOptions(config_files=(good, bad), default_locations=False))
    message = str(info.value)
    assert str(bad) in message and str(good) not in message
    assert reason in message
    assert "\n" not in message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(NetworkConfigError, match="does not exist"):
        load_config(NetworkOptions(config_files=(tmp_path / "nope.toml",)))


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
    with pytest.raises(NetworkConfigError, match="ORIGINAL=MIRROR") as info:
        parse_mirror(text)
    assert repr(text) in str(info.value)


def test_environment_is_left_alone(tmp_path: Path) -> None:
    before = dict(os.environ)
    load_config(NetworkOptions(auth_file=_auth_file(tmp_path, {"BearerToken": "x"})))
    assert dict(os.environ) == before


def test_download_concurrency_from_a_file_else_pixis_default(tmp_path: Path) -> None:
    unset = load_config(NetworkOptions(default_locations=False))
    assert download_concurrency(unset) == 50  # pixi's and rattler's concurrency.downloads
    config = tmp_path / "config.toml"
    config.write_text("[concurrency]\ndownloads = 3\n")
    assert download_concurrency(load_config(NetworkOptions(config_files=(config,)))) == 3


@pytest.mark.parametrize(
    ("mirror", "words"),
    [
        (("notaurl", "https://m.example"), "both sides must be URLs"),
        ((CF, "https://m exa mple"), "both sides must be URLs"),
        ((CF, "ftp://m.example/cf"), "unsupported URL scheme 'ftp'"),
        ((CF, f"https://u:{SECRET}@m exa mple"), "both sides must be URLs"),
    ],
)
def test_bad_mirror_is_one_clear_error(mirror: tuple[str, str], words: str) -> None:
    with pytest.raises(NetworkConfigError) as info:
        load_config(NetworkOptions(mirrors=(mirror,), default_locations=False))
    assert words in str(info.value)
    assert "\n" not in str(info.value) and SECRET not in str(info.value)


def test_a_directory_is_not_a_config_or_auth_file(tmp_path: Path) -> None:
    with pytest.raises(NetworkConfigError, match="is not a file"):
        load_config(NetworkOptions(config_files=(tmp_path,), default_locations=False))
    with pytest.raises(NetworkConfigError, match="is not a file"):
        load_config(NetworkOptions(auth_file=tmp_path, default_locations=False))


def test_a_config_error_shows_no_secret(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text(f'[mirrors]\n"{CF}/" = ["https://u:{SECRET}@m exa mple/"]\n')
    with pytest.raises(NetworkConfigError) as info:
        load_config(NetworkOptions(config_files=(bad,), default_locations=False))
    assert str(bad) in str(info.value)
    assert SECRET not in str(info.value)

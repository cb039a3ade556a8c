"""The fixture env packed end to end over every channel scheme rattler's client serves, each
from a real server on 127.0.0.1, and each archive byte-identical to the one over plain HTTP.

One lock for all of them (its URLs on the placeholder host): a mirror, from `--mirror` or a
config.toml, sends the downloads to the server under test. That is how a team moves a
channel to S3 or a registry, and it keeps the lock, hence the manifest, the same.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.fixtures.locks import PLACEHOLDER_URL
from devtools.httpserver import FaultServer
from devtools.serverproc import Certificates, certificates, free_port
from tests.clirun import BIN, assert_one_error_line
from tests.servers import S3_KEY, Registry, forward_proxy, moto_s3, oci_registry

TOKEN = "schemes-t0ken-5ecret-88"
# rattler looks credentials up by the channel's own host, before its mirror middleware
# rewrites the URL: credentials for a mirrored channel are stored under the lock's host.
CHANNEL_HOST = "fixture.envpack.invalid"
BUCKET = "envpack-fixture"
_SCRUBBED = ("RATTLER_AUTH_FILE", "XDG_CONFIG_HOME", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(scope="module")
def files(fixture_channel: FixtureChannel) -> dict[str, Path]:
    """`subdir/filename` → file, for what the linux-64 env of the lock downloads."""
    found: dict[str, Path] = {}
    for line in fixture_channel.lock_v6.read_text().splitlines():
        if "conda: " + PLACEHOLDER_URL in line:
            rel = line.split(PLACEHOLDER_URL + "/", 1)[1].strip()
            if rel.startswith(("linux-64/", "noarch/")):
                found[rel] = fixture_channel.root / rel
    return found


@pytest.fixture(scope="module")
def project(fixture_channel: FixtureChannel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("schemes") / "project"
    return lock_for(fixture_channel.lock_v6, PLACEHOLDER_URL, where).parent


def _env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without credentials or proxies, and a HOME of the test's own."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED and not k.startswith(("AWS_", "GOOGLE_"))
    }
    return {**env, "HOME": str(home), **extra}


def _pack(
    project: Path, tmp: Path, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    argv = [BIN / "envpack", project, "-o", tmp / "env.tar", "--cache", tmp / "cache", "-q"]
    argv += ["--retries", "2", "--timeout", "10", *args]
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        env=env or _env(tmp / "home"),
        timeout=300,
        check=False,
    )


def _archive_sha(tmp: Path, result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return hashlib.sha256((tmp / "env.tar").read_bytes()).hexdigest()


def _refused(tmp: Path, result: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    line = assert_one_error_line(result, *needles)
    assert not (tmp / "env.tar").exists()
    assert not list(tmp.glob(".env.tar.*")), "a temp output was left behind"
    return line


def _mirror_to(base: str) -> str:
    return f"{PLACEHOLDER_URL}={base}"


def _config(tmp: Path, text: str) -> Path:
    path = tmp / "config.toml"
    path.write_text(text)
    return path


def _by_url_path(files: dict[str, Path], prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}/{rel}": path.read_bytes() for rel, path in files.items()}


@pytest.fixture(scope="module")
def reference(
    project: Path, files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """sha256 of the archive packed over plain HTTP, without credentials."""
    tmp = tmp_path_factory.mktemp("reference")
    with FaultServer(_by_url_path(files)) as server:
        result = _pack(project, tmp, "--mirror", _mirror_to(server.base_url))
        assert server.count(next(iter(_by_url_path(files)))) == 1
    return _archive_sha(tmp, result)


# --- http(s) with credentials ----------------------------------------------------------------


def test_http_bearer_token_from_auth_file(
    project: Path, files: dict[str, Path], reference: str, tmp_path: Path
) -> None:
    def guard(path: str, headers: Mapping[str, str]) -> str | None:
        return path if headers.get("Authorization") == f"Bearer {TOKEN}" else None

    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({CHANNEL_HOST: {"BearerToken": TOKEN}}))
    with FaultServer(_by_url_path(files), guard=guard) as server:
        result = _pack(
            project, tmp_path, "--mirror", _mirror_to(server.base_url), "--auth-file", auth
        )
    assert _archive_sha(tmp_path, result) == reference


def test_http_conda_token_from_rattler_auth_file(
    project: Path, files: dict[str, Path], reference: str, tmp_path: Path
) -> None:
    def guard(path: str, headers: Mapping[str, str]) -> str | None:
        prefix = f"/t/{TOKEN}"
        return path[len(prefix) :] if path.startswith(prefix + "/") else None

    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({CHANNEL_HOST: {"CondaToken": TOKEN}}))
    env = _env(tmp_path / "home", RATTLER_AUTH_FILE=str(auth))
    # The token goes in first (…/t/TOKEN/channel/…), so only a mirror of the whole host
    # still matches the URL: a channel-level one would not, and rattler would skip it.
    with FaultServer(_by_url_path(files, "/channel"), guard=guard) as server:
        mirror = f"https://{CHANNEL_HOST}={server.base_url}"
        result = _pack(project, tmp_path, "--mirror", mirror, env=env)
        assert all(r.path.startswith(f"/t/{TOKEN}/channel/") for r in server.requests)
    assert _archive_sha(tmp_path, result) == reference


def _basic_guard(password: str) -> Callable[[str, Mapping[str, str]], str | None]:
    expected = "Basic " + base64.b64encode(f"carol:{password}".encode()).decode()

    def guard(path: str, headers: Mapping[str, str]) -> str | None:
        return path if headers.get("Authorization") == expected else None

    return guard


def _netrc(home: Path, password: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / ".netrc").write_text(f"machine {CHANNEL_HOST} login carol password {password}\n")
    (home / ".netrc").chmod(0o600)


def test_http_basic_auth_from_netrc(
    project: Path, files: dict[str, Path], reference: str, tmp_path: Path
) -> None:
    _netrc(tmp_path / "home", TOKEN)
    with FaultServer(_by_url_path(files), guard=_basic_guard(TOKEN)) as server:
        result = _pack(project, tmp_path, "--mirror", _mirror_to(server.base_url))
    assert _archive_sha(tmp_path, result) == reference


def test_netrc_with_a_wrong_password(project: Path, files: dict[str, Path], tmp_path: Path) -> None:
    _netrc(tmp_path / "home", "not-the-password")
    with FaultServer(_by_url_path(files), guard=_basic_guard(TOKEN)) as server:
        result = _pack(project, tmp_path, "--mirror", _mirror_to(server.base_url))
    line = _refused(tmp_path, result, "HTTP 401", "access denied", "netrc")
    assert "not-the-password" not in result.stderr.decode()
    assert PLACEHOLDER_URL in line


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls(certs: Certificates) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    return context


def test_https_with_an_untrusted_certificate(
    project: Path, files: dict[str, Path], reference: str, tmp_path: Path, tls: ssl.SSLContext
) -> None:
    with FaultServer(_by_url_path(files), tls=tls) as server:
        mirror = ("--mirror", _mirror_to(server.base_url))
        refused = _pack(project, tmp_path, *mirror)
        _refused(tmp_path, refused, "certificate", "not trusted")
        config = _config(tmp_path, "tls-no-verify = true\n")
        result = _pack(project, tmp_path, *mirror, "-c", config)
    assert _archive_sha(tmp_path, result) == reference


@pytest.mark.parametrize("roots", ["system", "webpki"])
def test_https_with_a_ca_from_ssl_cert_file(
    project: Path,
    files: dict[str, Path],
    reference: str,
    tmp_path: Path,
    tls: ssl.SSLContext,
    certs: Certificates,
    roots: str,
) -> None:
    # A corporate CA, the way pixi users add one: SSL_CERT_FILE, whatever tls-root-certs says.
    config = _config(tmp_path, f'tls-root-certs = "{roots}"\n')
    env = _env(tmp_path / "home", SSL_CERT_FILE=str(certs.ca))
    with FaultServer(_by_url_path(files), tls=tls) as server:
        mirror = ("--mirror", _mirror_to(server.base_url))
        result = _pack(project, tmp_path, *mirror, "-c", config, env=env)
    assert _archive_sha(tmp_path, result) == reference


def test_http_proxy_from_config(
    project: Path, files: dict[str, Path], reference: str, tmp_path: Path
) -> None:
    # The proxy is the only server there is: the mirror's host does not exist.
    with FaultServer(_by_url_path(files, "/channel")) as proxy:
        config = _config(tmp_path, f'[proxy-config]\nhttp = "{proxy.base_url}"\n')
        mirror = _mirror_to("http://mirror.envpack.invalid/channel")
        result = _pack(project, tmp_path, "--mirror", mirror, "-c", config)
        seen = [r.path for r in proxy.requests]
    assert _archive_sha(tmp_path, result) == reference
    assert seen and all(p.startswith("http://mirror.envpack.invalid/channel/") for p in seen)


def test_https_through_a_proxy_from_config(
    project: Path, files: dict[str, Path], reference: str, tmp_path: Path, tls: ssl.SSLContext
) -> None:
    with FaultServer(_by_url_path(files), tls=tls) as server, forward_proxy(tmp_path) as proxy:
        mirror = ("--mirror", _mirror_to(server.base_url))
        config = _config(tmp_path, f'tls-no-verify = true\n[proxy-config]\nhttps = "{proxy}"\n')
        result = _pack(project, tmp_path, *mirror, "-c", config)
        assert _archive_sha(tmp_path, result) == reference
        # The proxy is really on the way: one that is not there stops every download.
        (tmp_path / "env.tar").unlink()
        nowhere = f"http://127.0.0.1:{free_port()}"
        dead = _config(tmp_path, f'tls-no-verify = true\n[proxy-config]\nhttps = "{nowhere}"\n')
        shutil.rmtree(tmp_path / "cache")
        _refused(tmp_path, _pack(project, tmp_path, *mirror, "-c", dead), "giving up")


# --- s3:// -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    keys = {f"channel/{rel}": path for rel, path in files.items()}
    with moto_s3(tmp_path_factory.mktemp("moto"), keys, BUCKET) as server:
        yield server.options_toml() + server.options_toml("no-such-bucket")


def _aws(tmp: Path) -> dict[str, str]:
    return _env(tmp / "home", AWS_ACCESS_KEY_ID=S3_KEY[0], AWS_SECRET_ACCESS_KEY=S3_KEY[1])


def test_s3_from_moto(project: Path, s3: str, reference: str, tmp_path: Path) -> None:
    config = _config(
        tmp_path, f'[mirrors]\n"{PLACEHOLDER_URL}/" = ["s3://{BUCKET}/channel/"]\n{s3}'
    )
    result = _pack(project, tmp_path, "-c", config, env=_aws(tmp_path))
    assert _archive_sha(tmp_path, result) == reference


def test_s3_bucket_missing(project: Path, s3: str, tmp_path: Path) -> None:
    mirror = _mirror_to("s3://no-such-bucket/channel")
    result = _pack(
        project, tmp_path, "--mirror", mirror, "-c", _config(tmp_path, s3), env=_aws(tmp_path)
    )
    _refused(tmp_path, result, "HTTP 404", "missing bucket")


def test_s3_without_credentials(project: Path, s3: str, tmp_path: Path) -> None:
    mirror = _mirror_to(f"s3://{BUCKET}/channel")
    result = _pack(project, tmp_path, "--mirror", mirror, "-c", _config(tmp_path, s3))
    _refused(tmp_path, result, "AWS", "credentials")


# --- oci:// ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(
    files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    with oci_registry(tmp_path_factory.mktemp("oci"), files, "envpack/channel") as server:
        yield server


def _oci_auth(tmp: Path, password: str) -> Path:
    auth = tmp / "oci-auth.json"
    auth.write_text(
        json.dumps({"127.0.0.1": {"BasicHTTP": {"username": "reader", "password": password}}})
    )
    return auth


def test_oci_registry(project: Path, registry: Registry, reference: str, tmp_path: Path) -> None:
    config = _config(tmp_path, "tls-no-verify = true\n")
    result = _pack(
        project,
        tmp_path,
        "--mirror",
        _mirror_to("oci://127.0.0.1/envpack/channel"),
        "-c",
        config,
        "--auth-file",
        _oci_auth(tmp_path, registry.password),
    )
    assert _archive_sha(tmp_path, result) == reference
    assert "/v2/envpack/channel/linux-64/python/blobs/sha256:" in registry.log.read_text()


def test_oci_registry_refuses_wrong_credentials(
    project: Path, registry: Registry, tmp_path: Path
) -> None:
    result = _pack(
        project,
        tmp_path,
        "--mirror",
        _mirror_to("oci://127.0.0.1/envpack/channel"),
        "-c",
        _config(tmp_path, "tls-no-verify = true\n"),
        "--auth-file",
        _oci_auth(tmp_path, "wrong-password"),
    )
    line = _refused(tmp_path, result, "OCI registry refused", "credentials")
    assert "wrong-password" not in line


# --- gcs://, file://, and what is refused ------------------------------------------------------


def test_gcs_reaches_rattlers_gcs_middleware(project: Path, tmp_path: Path) -> None:
    # rattler sends gcs:// to https://storage.googleapis.com, with no emulator setting: here,
    # without Google credentials, its middleware stops before any request, and says so.
    result = _pack(project, tmp_path, "--mirror", _mirror_to("gcs://envpack-bucket/channel"))
    _refused(tmp_path, result, "GCS", "credentials")


def test_file_urls(
    project: Path, fixture_channel: FixtureChannel, reference: str, tmp_path: Path
) -> None:
    result = _pack(project, tmp_path, "--mirror", _mirror_to(fixture_channel.root.as_uri()))
    assert _archive_sha(tmp_path, result) == reference


def test_unknown_scheme(project: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, f'[mirrors]\n"{PLACEHOLDER_URL}/" = ["ftp://127.0.0.1/channel/"]\n')
    result = _pack(project, tmp_path, "-c", config)
    _refused(tmp_path, result, "unsupported URL scheme 'ftp'", "ftp://127.0.0.1/channel/")
    flag = _pack(project, tmp_path, "--mirror", _mirror_to("ftp://127.0.0.1/channel"))
    _refused(tmp_path, flag, "unsupported URL scheme 'ftp'")


def test_malformed_config(project: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, "[mirrors\n")
    result = _pack(project, tmp_path, "-c", config)
    _refused(tmp_path, result, str(config), "not valid")

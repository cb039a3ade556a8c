"""The fetcher against a real local HTTP server that injects faults."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import time
from pathlib import Path

import pytest
from rattler.networking import Client

from devtools.httpserver import FaultServer
from envpack.core.errors import EnvpackError, FetchError, HashMismatchError
from envpack.core.models import Artifact, Download
from envpack.core.progress import Bar
from envpack.packer.fetch import Cache, Fetcher, FetchOptions
from envpack.packer.netconfig import NetworkOptions, load_config, make_client

# attempts leaves headroom: see test_retry_after_an_error_whose_body_arrives_late for why a
# retry after an HTTP error status can be lost (a bug), which would make exact counts flaky.
FAST = FetchOptions(concurrency=4, attempts=8, timeout=0.5, backoff=0.001, backoff_max=0.01)
SECRET = "s3cr3t-T0KEN-9f8e7d"


class RecordingReporter:
    """Keeps every message, so tests can check what a user would see."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def info(self, message: str) -> None:
        self.messages.append(("info", message))

    def warn(self, message: str) -> None:
        self.messages.append(("warn", message))

    def debug(self, message: str) -> None:
        self.messages.append(("debug", message))

    def bar(self, desc: str, total: int | None, unit: str = "B") -> Bar:
        return _Bar()

    @property
    def warnings(self) -> list[str]:
        return [m for level, m in self.messages if level == "warn"]

    def text(self) -> str:
        return "\n".join(m for _, m in self.messages)


class _Bar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _artifact(
    name: str, data: bytes, *, sha256: bool = True, md5: bool = False, size: bool = True
) -> Artifact:
    return Artifact(
        kind="conda",
        name=name,
        version="1.0",
        build="h0_0",
        filename=f"{name}-1.0-h0_0.conda",
        subdir="linux-64",
        sha256=hashlib.sha256(data).hexdigest() if sha256 else None,
        md5=hashlib.md5(data).hexdigest() if md5 else None,
        size=len(data) if size else None,
    )


def _path(artifact: Artifact) -> str:
    return f"/{artifact.subdir}/{artifact.filename}"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Client:
    """rattler's client as envpack configures it, blind to the developer's own credentials."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RATTLER_AUTH_FILE", raising=False)
    return make_client(load_config(NetworkOptions(default_locations=False)))


async def _no_sleep(seconds: float) -> None:
    pass


def _fetcher(
    tmp_path: Path,
    client: Client,
    reporter: RecordingReporter | None = None,
    options: FetchOptions = FAST,
) -> Fetcher:
    return Fetcher(
        Cache(tmp_path / "cache"),
        client,
        reporter or RecordingReporter(),
        options,
        sleep=_no_sleep,
    )


def _cache_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "cache"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- the happy path -----------------------------------------------------------------------


def test_concurrent_fetch_of_many_files(tmp_path: Path, client: Client) -> None:
    rng = random.Random(7)
    blobs = {f"pkg{i}": rng.randbytes(rng.randrange(0, 300_000)) for i in range(40)}
    artifacts = {name: _artifact(name, data) for name, data in blobs.items()}
    files = {_path(a): blobs[name] for name, a in artifacts.items()}
    with FaultServer(files) as server:
        downloads = [Download(a, server.url(_path(a))) for a in artifacts.values()]
        fetched = _fetcher(tmp_path, client).fetch_all(downloads)
        assert [f.artifact for f in fetched] == [d.artifact for d in downloads]
        for item in fetched:
            data = blobs[item.artifact.name]
            assert item.path.read_bytes() == data
            assert item.sha256 == hashlib.sha256(data).hexdigest()
            assert item.size == len(data)
        assert len(server.requests) == len(blobs)


def test_downloads_run_in_parallel(tmp_path: Path, client: Client) -> None:
    # 16 files that each take 0.25 s to answer: one after another that is 4 s.
    blobs = {f"slow{i}": os.urandom(1000) for i in range(16)}
    artifacts = [_artifact(n, d) for n, d in blobs.items()]
    files = {_path(a): blobs[a.name] for a in artifacts}
    faults = {p: ["delay"] for p in files}
    options = FetchOptions(concurrency=8, attempts=1, timeout=5)
    with FaultServer(files, faults, delay_seconds=0.25) as server:
        start = time.monotonic()
        _fetcher(tmp_path, client, options=options).fetch_all(
            Download(a, server.url(_path(a))) for a in artifacts
        )
        elapsed = time.monotonic() - start
    assert elapsed < 2.0, f"16 × 0.25 s downloads took {elapsed:.2f} s with concurrency 8"


def test_file_url(tmp_path: Path, client: Client) -> None:
    data = os.urandom(5000)
    source = tmp_path / "local.conda"
    source.write_bytes(data)
    artifact = _artifact("local", data)
    fetched = _fetcher(tmp_path, client).fetch(Download(artifact, source.as_uri()))
    assert fetched.path.read_bytes() == data


def test_missing_file_url_is_a_fetch_error(tmp_path: Path, client: Client) -> None:
    artifact = _artifact("gone", b"x")
    with pytest.raises(FetchError, match="gone"):
        _fetcher(tmp_path, client).fetch(Download(artifact, (tmp_path / "gone.conda").as_uri()))


def test_unsupported_scheme(tmp_path: Path, client: Client) -> None:
    with pytest.raises(FetchError, match="scheme"):
        _fetcher(tmp_path, client).fetch(Download(_artifact("x", b"x"), "ftp://host/x.conda"))


# --- transient faults are retried -----------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        ["500"],
        ["503"],
        ["500", "503", "502"],
        ["truncate"],
        ["stall"],
        ["close"],
        ["close", "truncate", "503"],
        ["429"],
    ],
)
def test_transient_faults_are_retried(tmp_path: Path, client: Client, script: list[str]) -> None:
    data = os.urandom(200_000)
    artifact = _artifact("flaky", data)
    path = _path(artifact)
    with FaultServer({path: data}, {path: script}, stall_seconds=3) as server:
        fetched = _fetcher(tmp_path, client).fetch(Download(artifact, server.url(path)))
        assert server.count(path) >= len(script) + 1
    assert fetched.path.read_bytes() == data
    assert _cache_files(tmp_path) == [fetched.path]


def test_transient_faults_among_many_files(tmp_path: Path, client: Client) -> None:
    rng = random.Random(11)
    kinds = ["500", "503", "truncate", "close", "ok"]
    blobs = {f"p{i}": rng.randbytes(rng.randrange(1, 100_000)) for i in range(20)}
    artifacts = [_artifact(n, d) for n, d in blobs.items()]
    files = {_path(a): blobs[a.name] for a in artifacts}
    faults = {p: [rng.choice(kinds) for _ in range(rng.randrange(0, 3))] for p in files}
    with FaultServer(files, faults) as server:
        fetched = _fetcher(tmp_path, client).fetch_all(
            Download(a, server.url(_path(a))) for a in artifacts
        )
    for item in fetched:
        assert item.path.read_bytes() == blobs[item.artifact.name]
    assert len(_cache_files(tmp_path)) == len(blobs)


# --- persistent faults fail, in bounded time ------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "503", "truncate", "stall", "close"])
def test_persistent_fault_fails_with_the_url(tmp_path: Path, client: Client, fault: str) -> None:
    data = os.urandom(10_000)
    artifact = _artifact("broken", data)
    path = _path(artifact)
    options = FetchOptions(attempts=3, timeout=0.3, backoff=0.01, backoff_max=0.02)
    with FaultServer({path: data}, then={path: fault}, stall_seconds=5) as server:
        url = server.url(path)
        start = time.monotonic()
        with pytest.raises(FetchError) as info:
            _fetcher(tmp_path, client, options=options).fetch(Download(artifact, url))
        elapsed = time.monotonic() - start
        assert 1 <= server.count(path) <= 3
    assert not isinstance(info.value, HashMismatchError)
    assert url in str(info.value)
    assert elapsed < 4.0
    assert _cache_files(tmp_path) == []


def test_retry_after_an_error_whose_body_arrives_late(tmp_path: Path, client: Client) -> None:
    # The 503's body comes 0.3 s after its headers (a proxy's error page, say). With two
    # attempts, the second one must get a clean connection and succeed.
    data = os.urandom(1000)
    artifact = _artifact("late", data)
    path = _path(artifact)
    options = FetchOptions(attempts=2, timeout=2, backoff=0.001, backoff_max=0.001)
    with FaultServer({path: data}, {path: ["slowbody:503"]}, delay_seconds=0.3) as server:
        fetched = _fetcher(tmp_path, client, options=options).fetch(
            Download(artifact, server.url(path))
        )
    assert fetched.path.read_bytes() == data


def test_real_backoff_is_bounded(tmp_path: Path, client: Client) -> None:
    # No injected sleep here: the real delays must stay within backoff_max (+50 % jitter).
    data = b"abc"
    artifact = _artifact("slowfail", data)
    path = _path(artifact)
    options = FetchOptions(attempts=4, timeout=1, backoff=0.05, backoff_max=0.1)
    fetcher = Fetcher(Cache(tmp_path / "cache"), client, RecordingReporter(), options)
    with FaultServer({path: data}, then={path: "503"}) as server:
        start = time.monotonic()
        with pytest.raises(FetchError):
            fetcher.fetch(Download(artifact, server.url(path)))
        elapsed = time.monotonic() - start
    # three sleeps of at most 0.15 s each, plus the requests themselves
    assert elapsed < 2.0


def test_404_fails_at_once(tmp_path: Path, client: Client) -> None:
    artifact = _artifact("missing", b"data")
    path = _path(artifact)
    with FaultServer({}) as server:
        url = server.url(path)
        with pytest.raises(FetchError) as info:
            _fetcher(tmp_path, client).fetch(Download(artifact, url))
        assert server.count(path) == 1
    assert "404" in str(info.value)
    assert url in str(info.value)
    assert _cache_files(tmp_path) == []


def test_one_permanent_failure_fails_fetch_all(tmp_path: Path, client: Client) -> None:
    blobs = {f"ok{i}": os.urandom(2000) for i in range(10)}
    artifacts = [_artifact(n, d) for n, d in blobs.items()]
    files = {_path(a): blobs[a.name] for a in artifacts}
    missing = _artifact("missing", b"nope")
    with FaultServer(files) as server:
        downloads = [Download(a, server.url(_path(a))) for a in [*artifacts, missing]]
        with pytest.raises(FetchError, match="404"):
            _fetcher(tmp_path, client).fetch_all(downloads)
    assert not [p for p in _cache_files(tmp_path) if p.name.endswith(".part")]


# --- verification -------------------------------------------------------------------------


def test_sha256_mismatch_names_package_and_both_hashes(tmp_path: Path, client: Client) -> None:
    promised = os.urandom(4000)
    served = os.urandom(4000)  # same size: only the hash can tell
    artifact = _artifact("liar", promised)
    path = _path(artifact)
    with FaultServer({path: served}) as server:
        with pytest.raises(HashMismatchError) as info:
            _fetcher(tmp_path, client).fetch(Download(artifact, server.url(path)))
        assert server.count(path) == 1  # a hash mismatch is permanent
    message = str(info.value)
    assert "liar" in message
    assert hashlib.sha256(promised).hexdigest() in message
    assert hashlib.sha256(served).hexdigest() in message
    assert _cache_files(tmp_path) == []  # neither the bad file nor a .part


def test_size_mismatch_is_refused(tmp_path: Path, client: Client) -> None:
    data = os.urandom(100)
    artifact = _artifact("short", data, sha256=False, md5=False)
    artifact = Artifact(**{**artifact.__dict__, "size": 101})
    path = _path(artifact)
    with FaultServer({path: data}) as server, pytest.raises(HashMismatchError, match="size"):
        _fetcher(tmp_path, client).fetch(Download(artifact, server.url(path)))
    assert _cache_files(tmp_path) == []


def test_md5_only_artifact_is_verified_by_md5(tmp_path: Path, client: Client) -> None:
    data = os.urandom(3000)
    good = _artifact("md5only", data, sha256=False, md5=True)
    assert good.sha256 is None
    bad = Artifact(**{**good.__dict__, "name": "md5bad", "md5": hashlib.md5(b"other").hexdigest()})
    with FaultServer({_path(good): data, _path(bad): data}) as server:
        fetched = _fetcher(tmp_path, client).fetch(Download(good, server.url(_path(good))))
        assert fetched.path.read_bytes() == data
        assert fetched.sha256 == hashlib.sha256(data).hexdigest()
        with pytest.raises(HashMismatchError) as info:
            _fetcher(tmp_path, client).fetch(Download(bad, server.url(_path(bad))))
    assert "md5" in str(info.value)
    assert hashlib.md5(data).hexdigest() in str(info.value)
    assert _cache_files(tmp_path) == [fetched.path]


def test_cache_hit_is_not_downloaded_again(tmp_path: Path, client: Client) -> None:
    data = os.urandom(5000)
    artifact = _artifact("cached", data)
    path = _path(artifact)
    with FaultServer({path: data}) as server:
        first = _fetcher(tmp_path, client).fetch(Download(artifact, server.url(path)))
        reporter = RecordingReporter()
        second = _fetcher(tmp_path, client, reporter).fetch(Download(artifact, server.url(path)))
        assert server.count(path) == 1
    assert second.path == first.path
    assert second.sha256 == hashlib.sha256(data).hexdigest()
    assert reporter.warnings == []


@pytest.mark.parametrize("kind", ["sha256", "md5", "nohash"])
def test_corrupt_cache_hit_is_downloaded_again(tmp_path: Path, client: Client, kind: str) -> None:
    data = os.urandom(5000)
    artifact = _artifact(
        "rotten", data, sha256=kind == "sha256", md5=kind == "md5", size=kind != "nohash"
    )
    path = _path(artifact)
    with FaultServer({path: data}) as server:
        first = _fetcher(tmp_path, client).fetch(Download(artifact, server.url(path)))
        corrupted = bytearray(data)
        corrupted[2500] ^= 0xFF
        first.path.write_bytes(bytes(corrupted))
        reporter = RecordingReporter()
        second = _fetcher(tmp_path, client, reporter).fetch(Download(artifact, server.url(path)))
        assert server.count(path) == 2
    assert second.path.read_bytes() == data
    assert second.sha256 == hashlib.sha256(data).hexdigest()
    assert any("corrupt" in w and "rotten" in w for w in reporter.warnings), reporter.warnings


def test_unhashed_hits_are_marked_for_their_reader(tmp_path: Path, client: Client) -> None:
    data = os.urandom(5000)
    locked, md5_only = _artifact("fresh", data), _artifact("old", data, sha256=False, md5=True)
    paths = {_path(a): data for a in (locked, md5_only)}
    with FaultServer(paths) as server:
        downloads = [Download(a, server.url(_path(a))) for a in (locked, md5_only)]
        _fetcher(tmp_path, client).fetch_all(downloads)
        trusting = Fetcher(Cache(tmp_path / "cache"), client, RecordingReporter(), hash_hits=False)
        hit, hashed = trusting.fetch_all(downloads)
        # A wrong size is seen without hashing: that hit is hashed, dropped, downloaded again.
        hit.path.write_bytes(data[:-1])
        (again,) = trusting.fetch_all(downloads[:1])
        assert server.count(_path(locked)) == 2
    assert (hit.verified, hit.sha256, hit.size) == (False, locked.sha256, len(data))
    assert hashed.verified  # no sha256 in the lock: nothing to trust, hashed as always
    assert again.verified and again.path.read_bytes() == data


def test_retry_never_leaves_partial_files(tmp_path: Path, client: Client) -> None:
    data = os.urandom(300_000)
    artifact = _artifact("partial", data)
    path = _path(artifact)
    with FaultServer({path: data}, then={path: "truncate"}) as server:
        with pytest.raises(FetchError):
            _fetcher(tmp_path, client).fetch(Download(artifact, server.url(path)))
        assert server.count(path) == FAST.attempts
    assert _cache_files(tmp_path) == []


# --- credentials in the URL (auth files and netrc: tests/test_netconfig.py) ---------------


def test_user_and_password_in_url_become_basic_auth(tmp_path: Path, client: Client) -> None:
    data = b"payload"
    with FaultServer({"/x.conda": data}) as server:
        url = f"http://bob:{SECRET}@127.0.0.1:{server.port}/x.conda"
        _fetcher(tmp_path, client).fetch(Download(_artifact("userinfo", data), url))
        (request,) = server.requests
    expected = base64.b64encode(f"bob:{SECRET}".encode()).decode()
    assert request.headers.get("Authorization") == f"Basic {expected}"
    assert SECRET not in request.path


def test_percent_encoded_password_in_url_is_decoded(tmp_path: Path, client: Client) -> None:
    data = b"payload"
    with FaultServer({"/x.conda": data}) as server:
        url = f"http://bob:p%40ss%2Fword@127.0.0.1:{server.port}/x.conda"
        _fetcher(tmp_path, client).fetch(Download(_artifact("pct", data), url))
        (request,) = server.requests
    expected = base64.b64encode(b"bob:p@ss/word").decode()
    assert request.headers.get("Authorization") == f"Basic {expected}"


def test_conda_token_in_url_goes_on_the_wire(tmp_path: Path, client: Client) -> None:
    data = b"payload"
    path = f"/t/{SECRET}/linux-64/x.conda"
    with FaultServer({path: data}) as server:
        _fetcher(tmp_path, client).fetch(Download(_artifact("tok", data), server.url(path)))
        (request,) = server.requests
    assert request.path == path


@pytest.mark.parametrize("failure", ["404", "503", "hash"])
@pytest.mark.parametrize("where", ["token", "userinfo"])
def test_secrets_never_appear_in_errors_or_messages(
    tmp_path: Path, client: Client, failure: str, where: str
) -> None:
    data = os.urandom(1000)
    artifact = _artifact("leaky", data if failure != "hash" else b"something else")
    served_path = f"/t/{SECRET}/linux-64/x.conda" if where == "token" else "/linux-64/x.conda"
    files = {served_path: data} if failure != "404" else {}
    reporter = RecordingReporter()
    options = FetchOptions(attempts=3, timeout=1, backoff=0.001, backoff_max=0.001)
    then = {served_path: failure} if failure == "503" else None
    with FaultServer(files, then=then) as server:
        if where == "token":
            url = server.url(served_path)
        else:
            url = f"http://carol:{SECRET}@127.0.0.1:{server.port}{served_path}"
        with pytest.raises(EnvpackError) as info:
            _fetcher(tmp_path, client, reporter, options).fetch(Download(artifact, url))
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.args)
    assert SECRET not in reporter.text()
    assert "127.0.0.1" in str(info.value)  # the URL is there, only the secret is hidden

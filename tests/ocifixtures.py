"""What the registry tests share: the fixture project (v1, and v2 with one package more),
real docker-registry servers, pushes through the real CLI, and docker/podman credential files.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools import registries
from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.httpserver import serve_directory
from devtools.registries import PlainRegistry
from tests.clirun import run_cli
from tests.test_wheels import build_wheel


@contextlib.contextmanager
def plain_registry(tmp: Path, *, auth: bool, bearer: bool = False) -> Iterator[PlainRegistry]:
    """devtools' registry, or a skip where docker-registry is not installed."""
    if not registries.registry_available():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    with registries.plain_registry(tmp, auth=auth, bearer=bearer) as reg:
        yield reg


@dataclass(frozen=True)
class Project:
    path: Path
    wheel: Path  # v2 = the lock plus this wheel: an env that differs in one package
    cache: Path  # envpack's download cache, shared by every push


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel
) -> Iterator[Project]:
    base = tmp_path_factory.mktemp("oci-project")
    wheel = build_wheel(base / "wheel")
    with serve_directory(fixture_channel.root) as url:
        path = lock_for(fixture_channel.lock_v6, url, base / "project").parent
        yield Project(path, wheel, base / "cache")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainRegistry]:
    """A registry without auth, plain HTTP."""
    with plain_registry(tmp_path_factory.mktemp("registry"), auth=False) as reg:
        yield reg


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainRegistry]:
    """A registry with htpasswd basic auth, plain HTTP."""
    with plain_registry(tmp_path_factory.mktemp("auth-registry"), auth=True) as reg:
        yield reg


@pytest.fixture(scope="module")
def bearer_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainRegistry]:
    """A registry with docker's token auth: a bearer challenge, tokens from token_server."""
    with plain_registry(tmp_path_factory.mktemp("bearer-registry"), auth=False, bearer=True) as reg:
        yield reg


def push(
    project: Project,
    ref: str,
    *extra: str | Path,
    v2: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    inject = ("--inject", project.wheel) if v2 else ()
    return run_cli(
        "envpack",
        project.path,
        "-o",
        ref,
        "--insecure",
        "--cache",
        project.cache,
        *inject,
        *extra,
        env=env,
    )


def pushed(project: Project, ref: str, *extra: str | Path, v2: bool = False) -> None:
    result = push(project, ref, *extra, v2=v2)
    assert result.returncode == 0, result.stderr.decode()


def manifest_of(registry: PlainRegistry, repo_tag: str) -> dict[str, object]:
    """The manifest as a standard tool reads it: `skopeo inspect --raw`."""
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo)")
    result = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{registry.host}/{repo_tag}",
        ],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return dict(json.loads(result.stdout))


def blob_digests(manifest: dict[str, object]) -> dict[str, int]:
    config = manifest["config"]
    layers = manifest["layers"]
    assert isinstance(config, dict) and isinstance(layers, list)
    return {d["digest"]: int(d["size"]) for d in [config, *layers]}


def docker_config(where: Path, registry: PlainRegistry, password: str | None = None) -> Path:
    """A ~/.docker/config.json (also podman's auth.json format) with the registry's login."""
    secret = password if password is not None else registry.password
    token = base64.b64encode(f"{registry.user}:{secret}".encode()).decode()
    where.mkdir(parents=True, exist_ok=True)
    path = where / "config.json"
    path.write_text(json.dumps({"auths": {registry.host: {"auth": token}}}))
    return path


def helper_program(path: Path, registry: PlainRegistry, asked: Path) -> Path:
    """A docker credential helper, speaking the protocol docker's helpers speak: `get`, the
    server on stdin, JSON on stdout; it knows only `registry`'s login and notes what it was
    asked for in `asked`."""
    known = json.dumps(
        {"ServerURL": registry.host, "Username": registry.user, "Secret": registry.password}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || { echo "unknown action $1" >&2; exit 1; }\n'
        f'read -r server; printf %s "$server" > {shlex.quote(str(asked))}\n'
        f'if [ "$server" = {shlex.quote(registry.host)} ]; then\n'
        f"  printf '%s' {shlex.quote(known)}\n"
        'else echo "credentials not found in native keychain"; exit 1; fi\n'
    )
    path.chmod(0o755)
    return path


def secrets(registry: PlainRegistry) -> list[str]:
    """Every spelling of the registry's credentials that must never be printed or stored."""
    assert registry.password is not None
    pair = f"{registry.user}:{registry.password}".encode()
    return [registry.password, base64.b64encode(pair).decode()]


def image_layout(layout: Path) -> tuple[Path, str]:
    """A one-layer linux/amd64 OCI image layout, as the image spec defines it; returns the
    layout and its manifest digest."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    content = io.BytesIO()
    with tarfile.open(fileobj=content, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    layer = content.getvalue()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **blob(json.dumps(config).encode()),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **blob(layer)}],
    }
    entry = blob(json.dumps(manifest, indent=1).encode())  # not canonical JSON, on purpose
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                **entry,
                "annotations": {"org.opencontainers.image.ref.name": "1"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return layout, str(entry["digest"])

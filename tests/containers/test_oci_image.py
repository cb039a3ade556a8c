"""`envpack --oci-image` in the Docker engine: `skopeo copy oci-archive:… docker-daemon:…`, then
`docker run --network none` (through the docker SDK), on a base made from the bookworm root."""

from __future__ import annotations

import contextlib
from pathlib import Path

import docker
import docker.errors
import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.httpserver import serve_directory
from tests.clirun import run_cli
from tests.containers.harness import backend_problem
from tests.ocifixtures import plain_registry
from tests.ocirun import base_from_rootfs, checked, need_tools

pytestmark = [pytest.mark.container, pytest.mark.slow]
TAG = "envpack-test/oci-image"


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    problem = backend_problem("docker")
    if problem:
        pytest.skip(f"docker backend unavailable: {problem}")
    need_tools("skopeo", "umoci")
    return docker.from_env(timeout=120)


def _load(client: docker.DockerClient, archive: Path, name: str) -> str:
    """The image into the daemon, as Docker 20.10 takes it (its `docker load` reads no OCI)."""
    ref = f"{TAG}:{name}"
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(ref, force=True)
    checked("skopeo", "copy", "-q", f"oci-archive:{archive}:latest", f"docker-daemon:{ref}")
    return ref


def _run(client: docker.DockerClient, ref: str, *argv: str) -> tuple[int, str]:
    container = client.containers.run(ref, list(argv) or None, network_mode="none", detach=True)
    try:
        code = int(container.wait(timeout=300)["StatusCode"])
        return code, container.logs(stdout=True, stderr=True).decode()
    finally:
        container.remove(force=True)


@pytest.mark.parametrize(("arch", "platform"), [("amd64", "linux-64"), ("arm64", "linux-aarch64")])
def test_image_runs_in_docker(
    client: docker.DockerClient,
    fixture_channel: FixtureChannel,
    tmp_path: Path,
    arch: str,
    platform: str,
) -> None:
    _, base = base_from_rootfs("bookworm", arch, tmp_path / "base")
    archive = tmp_path / "app.oci.tar"
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_v6, url, tmp_path / "project").parent
        result = run_cli(
            *("envpack", project, "--oci-image", "-o", archive, "--base", base, "-p", platform),
            *("--cache", tmp_path / "cache", "-q"),
        )
    assert result.returncode == 0, result.stderr.decode()
    ref = _load(client, archive, arch)
    try:
        assert client.images.get(ref).attrs["Architecture"] == arch
        code, out = _run(client, ref, "python", "-c", "import ssl, sqlite3; print('ok')")
        assert (code, out) == (0, "ok\n")
        code, out = _run(client, ref, "hello-c")
        assert code == 0, out
        assert "prefix: /app/env" in out
        code, out = _run(client, ref, "sh", "-c", "echo $FIXTURE_ENV_VAR")
        assert (code, out) == (0, "from-env-vars-d\n")
    finally:
        client.images.remove(ref, force=True)


def test_pushed_image_docker_pulls_and_runs(
    client: docker.DockerClient, fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    """`-o oci://` to a real registry on 127.0.0.1 (which Docker trusts over plain HTTP),
    then `docker pull` and run: the path a fleet takes."""
    _, base = base_from_rootfs("bookworm", "amd64", tmp_path / "base")
    with (
        plain_registry(tmp_path / "registry", auth=False) as reg,
        serve_directory(fixture_channel.root) as url,
    ):
        project = lock_for(fixture_channel.lock_v6, url, tmp_path / "project").parent
        ref = f"{reg.host}/envpack-test/pushed:1"
        result = run_cli(
            *("envpack", project, "--oci-image", "--base", base, "-o", f"oci://{ref}"),
            *("--insecure", "--cache", tmp_path / "cache", "-q"),
        )
        assert result.returncode == 0, result.stderr.decode()
        client.images.pull(ref)
        try:
            code, out = _run(client, ref, "python", "-c", "import ssl, sqlite3; print('ok')")
            assert (code, out) == (0, "ok\n")
        finally:
            client.images.remove(ref, force=True)

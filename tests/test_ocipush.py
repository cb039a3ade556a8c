"""`envpack -o oci://…` and `push_layout`, against Debian's real docker-registry.

Every assertion about what went over the wire is read from the registry's own access log
and blob store, and what it serves is read back with skopeo, a standard OCI tool.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from devtools.registries import PlainRegistry
from devtools.serverproc import free_port
from envpack.core.manifest import manifest_from_json
from envpack.core.ociref import ENV_ARTIFACT_TYPE, PLATFORM_KEY, TITLE, parse_ref
from envpack.core.progress import SilentReporter
from envpack.packer.lockfile import plan_lock
from envpack.packer.ocipush import push_layout
from envpack.packer.registrypush import PushSession
from tests.clirun import assert_one_error_line, run_cli
from tests.ocifixtures import (
    Project,
    auth_registry,
    blob_digests,
    docker_config,
    image_layout,
    manifest_of,
    project,
    push,
    pushed,
    registry,
    secrets,
)

__all__ = ["auth_registry", "project", "registry"]  # fixtures, used by name

pytestmark = pytest.mark.slow


def test_each_package_is_one_blob_whose_digest_is_the_locks_sha256(
    project: Project, registry: PlainRegistry
) -> None:
    pushed(project, f"oci://{registry.host}/team/env:v1")
    manifest = manifest_of(registry, "team/env:v1")
    config = manifest["config"]
    assert isinstance(config, dict) and isinstance(manifest["layers"], list)
    assert manifest["artifactType"] == config["mediaType"] == ENV_ARTIFACT_TYPE
    envpack_json = manifest_from_json(registry.blob_file(config["digest"]).read_bytes())
    annotations = manifest["annotations"]
    assert isinstance(annotations, dict)
    assert annotations[PLATFORM_KEY] == envpack_json.platform == "linux-64"
    layers = {layer["annotations"][TITLE]: layer for layer in manifest["layers"]}
    plan, _ = plan_lock(project.path / "pixi.lock", "default", "linux-64")
    assert {d.artifact.path for d in plan.downloads} == {a.path for a in envpack_json.artifacts}
    for download in plan.downloads:
        layer = layers[download.artifact.path]
        assert layer["digest"] == f"sha256:{download.artifact.sha256}"  # the lock's pin
        stored = registry.blob_file(layer["digest"]).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == download.artifact.sha256
        assert len(stored) == layer["size"] == download.artifact.size
    assert envpack_json.sbom is not None
    assert layers[envpack_json.sbom.path]["digest"] == f"sha256:{envpack_json.sbom.sha256}"
    assert {"pixi-pack.json", "environment.yml", "channel/linux-64/repodata.json"} <= set(layers)


def test_second_push_uploads_only_the_missing_blobs(
    project: Project, registry: PlainRegistry
) -> None:
    ref = f"oci://{registry.host}/team/update"
    mark = len(registry.uploads())  # other tests' pushes come before
    first_push = push(project, f"{ref}:v1")
    assert first_push.returncode == 0, first_push.stderr.decode()
    first = registry.uploads()[mark:]
    pushed(project, f"{ref}:v2", v2=True)
    second = registry.uploads()[mark + len(first) :]
    v1 = blob_digests(manifest_of(registry, "team/update:v1"))
    v2 = blob_digests(manifest_of(registry, "team/update:v2"))
    assert sorted(second) == sorted(set(v2) - set(v1))  # each missing blob once, nothing else
    wheel = f"sha256:{hashlib.sha256(project.wheel.read_bytes()).hexdigest()}"
    assert wheel in second
    assert sorted(first) == sorted(v1)
    first_bytes, second_bytes = sum(v1.values()), sum(v2[d] for d in second)
    print(f"second push ÷ first: {second_bytes} / {first_bytes} = {second_bytes / first_bytes:.4f}")
    # The same pack again: not one blob sent, and the very same manifest digest.
    again = push(project, f"{ref}:v1-again")
    assert again.returncode == 0, again.stderr.decode()
    assert registry.uploads()[mark + len(first) + len(second) :] == []
    assert "0 blobs sent" in again.stderr.decode()
    assert _digest(again.stderr.decode()) == _digest(first_push.stderr.decode())


def _digest(stderr: str) -> str:
    (line,) = [line for line in stderr.splitlines() if line.startswith("pushed ")]
    return line.split("@", 1)[1].split()[0]


def test_basic_auth_from_docker_config_and_no_secret_anywhere(
    project: Project, auth_registry: PlainRegistry, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    docker_config(home / ".docker", auth_registry)
    result = push(project, f"oci://{auth_registry.host}/team/env:v1", "-v", env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr.decode()
    stored = b"".join(p.read_bytes() for p in auth_registry.storage.rglob("*") if p.is_file())
    for secret in secrets(auth_registry):
        assert secret not in result.stderr.decode() + result.stdout.decode()
        assert secret.encode() not in stored
    # $DOCKER_CONFIG names the directory, as docker's own client reads it.
    other = docker_config(tmp_path / "dockercfg", auth_registry).parent
    result = push(
        project,
        f"oci://{auth_registry.host}/team/env:v2",
        env={"HOME": str(tmp_path / "empty"), "DOCKER_CONFIG": str(other)},
    )
    assert result.returncode == 0, result.stderr.decode()


def test_push_refuses_with_one_line_and_sends_nothing(
    project: Project, auth_registry: PlainRegistry, tmp_path: Path
) -> None:
    host = auth_registry.host
    before = len(auth_registry.access())
    empty = {"HOME": str(tmp_path / "nobody")}
    result = push(project, f"oci://{host}/team/env:x", env=empty)
    assert_one_error_line(result, f"registry {host} needs credentials (401)", "docker login")
    docker_config(tmp_path / "wrong" / ".docker", auth_registry, password="not-the-password")
    result = push(project, f"oci://{host}/team/env:x", env={"HOME": str(tmp_path / "wrong")})
    line = assert_one_error_line(result, "refused the credentials (401)")
    assert all(secret not in result.stderr.decode() for secret in secrets(auth_registry))
    assert "not-the-password" not in line
    # Only /v2/ pings: no blob, no manifest was sent.
    assert {a.path for a in auth_registry.access()[before:]} == {"/v2/"}
    closed = free_port()
    result = push(project, f"oci://127.0.0.1:{closed}/team/env:v1")
    assert_one_error_line(result, f"cannot reach the registry 127.0.0.1:{closed}")
    leftovers = list(project.cache.glob("envpack-push-*"))
    assert leftovers == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("-o", "oci://127.0.0.1:5000/Team/Env:v1"), "invalid registry reference"),
        (("-o", "oci://127.0.0.1:5000"), "expected oci://HOST[:PORT]/REPOSITORY[:TAG]"),
        (("-o", "oci://bob:hunter2@127.0.0.1:5000/env:v1"), "oci://***@127.0.0.1:5000/env:v1"),
        (("-o", "oci://127.0.0.1:5000/env", "--directory-only"), "drop --directory-only"),
        (("-o", "env.tar", "--insecure"), "--insecure is for -o oci://"),
        (("-o", "oci://127.0.0.1:5000/env", "--sbom-only"), "--sbom-only writes a file"),
    ],
)
def test_bad_registry_options_are_one_line(
    project: Project, tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    result = run_cli("envpack", project.path, *args, "--cache", project.cache, cwd=tmp_path)
    line = assert_one_error_line(result, needle)
    assert "hunter2" not in result.stderr.decode()
    assert result.returncode == 2, line
    assert list(tmp_path.iterdir()) == []


def test_push_layout_pushes_an_image_skopeo_reads(registry: PlainRegistry, tmp_path: Path) -> None:
    layout, digest = image_layout(tmp_path / "layout")
    ref = parse_ref(f"oci://{registry.host}/img/hello:1")
    got = push_layout(layout, PushSession(ref, True, SilentReporter()))
    assert got.digest == digest  # the layout's exact manifest bytes, not re-serialised
    assert got.traffic.blobs_uploaded == 2
    inspected = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/img/hello:1"],
            capture_output=True,
            check=True,
        ).stdout
    )
    assert inspected["Digest"] == digest
    assert inspected["Architecture"] == "amd64" and inspected["Os"] == "linux"
    # As an oci-archive tar, to another tag: every blob is there already.
    archive = tmp_path / "hello.oci.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=os.path.relpath(path, layout), recursive=False)
    again = push_layout(
        archive,
        PushSession(parse_ref(f"oci://{registry.host}/img/hello:2"), True, SilentReporter()),
    )
    assert (again.digest, again.traffic.blobs_uploaded, again.traffic.blobs_present) == (
        digest,
        0,
        2,
    )


def test_json_names_the_reference_and_the_manifest_digest(
    project: Project, registry: PlainRegistry
) -> None:
    ref = f"oci://{registry.host}/json/env:v1"
    result = push(project, ref, "--json")
    assert result.returncode == 0, result.stderr.decode()
    doc = json.loads(result.stdout)
    assert (doc["command"], doc["output"]) == ("pack", ref)
    raw = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{registry.host}/json/env:v1",
        ],
        capture_output=True,
        check=True,
    ).stdout
    assert doc["sha256"] == hashlib.sha256(raw).hexdigest()
    assert doc["size"] == sum(blob_digests(json.loads(raw)).values())

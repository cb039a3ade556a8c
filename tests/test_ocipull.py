"""`envunpack oci://…` and `pull_to_layout`, against Debian's real docker-registry.

What was fetched is read from the registry's access log; tampering is done in its blob store,
so the registry itself serves the wrong bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.httpserver import FaultServer
from devtools.registries import PlainRegistry
from devtools.serverproc import free_port
from envpack.core.manifest import manifest_from_json
from envpack.core.ociref import TITLE, parse_ref
from envpack.core.progress import SilentReporter
from envpack.packer.ocipush import push_layout
from envpack.packer.registrypush import PushSession
from envpack.target.ocipull import pull_to_layout
from tests.clirun import assert_one_error_line, run_cli
from tests.ocifixtures import (
    Project,
    auth_registry,
    bearer_registry,
    blob_digests,
    docker_config,
    image_layout,
    manifest_of,
    project,
    pushed,
    registry,
    secrets,
)

__all__ = ["auth_registry", "bearer_registry", "project", "registry"]  # fixtures, used by name

pytestmark = pytest.mark.slow


def unpack(
    ref: str,
    out: Path,
    *extra: str | Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return run_cli("envunpack", ref, "-o", out, "--insecure", *extra, env=env)


def test_pull_unpacks_an_env_that_runs(
    project: Project, registry: PlainRegistry, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/pull/env:v1"
    pushed(project, ref)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result = unpack(ref, tmp_path / "app", env={"TMPDIR": str(tmp)})
    assert result.returncode == 0, result.stderr.decode()
    python = tmp_path / "app" / "env" / "bin" / "python"
    ran = subprocess.run([python, "-c", "import ssl, sqlite3; print('ok')"], capture_output=True)
    assert ran.stdout == b"ok\n", ran.stderr
    assert (tmp_path / "app" / "activate.sh").is_file()
    assert list(tmp.iterdir()) == []  # without --cache the blobs went to a temp dir, now gone
    # --check on the same reference: every hash verified, nothing written.
    checked = run_cli("envunpack", "--check", ref, "--insecure", "--json")
    assert checked.returncode == 0, checked.stderr.decode()
    assert json.loads(checked.stdout)["verified"] is True
    # --list: the manifest and envpack.json (the config blob), not one layer.
    before = len(registry.access())
    listed = run_cli("envunpack", "--list", ref, "--insecure", "--json")
    assert listed.returncode == 0, listed.stderr.decode()
    config = manifest_of(registry, "pull/env:v1")["config"]
    assert isinstance(config, dict)
    stored = manifest_from_json(registry.blob_file(config["digest"]).read_bytes())
    assert [a["path"] for a in json.loads(listed.stdout)["artifacts"]] == [
        a.path for a in stored.artifacts
    ]
    blobs = [a.path for a in registry.access()[before:] if "/blobs/" in a.path]
    assert blobs == [f"/v2/pull/env/blobs/{config['digest']}"]


def test_update_with_the_v1_cache_fetches_only_the_changed_blobs(
    project: Project, registry: PlainRegistry, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/fleet/env"
    pushed(project, f"{ref}:v1")
    pushed(project, f"{ref}:v2", v2=True)
    v1 = blob_digests(manifest_of(registry, "fleet/env:v1"))
    v2 = blob_digests(manifest_of(registry, "fleet/env:v2"))
    cache = tmp_path / "cache"
    mark = registry.blob_gets()
    assert unpack(f"{ref}:v1", tmp_path / "app", "--cache", cache).returncode == 0
    full_v1 = _since(mark, registry.blob_gets())
    assert set(full_v1) == set(v1)
    mark = registry.blob_gets()
    result = unpack(f"{ref}:v2", tmp_path / "app", "--cache", cache, "--force")
    assert result.returncode == 0, result.stderr.decode()
    update = _since(mark, registry.blob_gets())
    assert set(update) == set(v2) - set(v1)  # the new wheel and the changed metadata only
    wheel = f"sha256:{hashlib.sha256(project.wheel.read_bytes()).hexdigest()}"
    assert wheel in update
    assert (tmp_path / "app/env/lib/python3.11/site-packages/hello_envpack").is_dir()
    mark = registry.blob_gets()
    assert unpack(f"{ref}:v2", tmp_path / "fresh").returncode == 0
    full = sum(_since(mark, registry.blob_gets()).values())
    changed = sum(update.values())
    print(f"update pull ÷ full pull: {changed} / {full} = {changed / full:.4f}")
    assert full == sum(v2.values())


def test_prune_cache_keeps_only_the_env_just_unpacked(
    project: Project, registry: PlainRegistry, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/prune/env"
    pushed(project, f"{ref}:v1")
    pushed(project, f"{ref}:v2", v2=True)
    v1 = {d.split(":")[1] for d in blob_digests(manifest_of(registry, "prune/env:v1"))}
    v2 = {d.split(":")[1] for d in blob_digests(manifest_of(registry, "prune/env:v2"))}
    cache = tmp_path / "cache"
    blobs = cache / "blobs" / "sha256"
    assert unpack(f"{ref}:v1", tmp_path / "app", "--cache", cache).returncode == 0
    assert unpack(f"{ref}:v2", tmp_path / "app", "--cache", cache, "--force").returncode == 0
    assert {p.name for p in blobs.iterdir()} == v1 | v2
    (blobs / f"{'0' * 64}.4242.part").write_bytes(b"another pull, mid-blob")
    # A failed unpack prunes nothing: the env it would replace still has its blobs.
    failed = unpack(f"{ref}:v2", tmp_path / "app", "--cache", cache, "--prune-cache")
    assert_one_error_line(failed, "already exists")
    assert {p.name for p in blobs.iterdir() if not p.name.endswith(".part")} == v1 | v2
    rolled_back = unpack(
        f"{ref}:v1", tmp_path / "app", "--cache", cache, "--prune-cache", "--force"
    )
    assert rolled_back.returncode == 0, rolled_back.stderr.decode()
    assert "pruned" in rolled_back.stderr.decode()
    assert {p.name for p in blobs.iterdir()} == v1 | {f"{'0' * 64}.4242.part"}
    assert not (tmp_path / "app/env/lib/python3.11/site-packages/hello_envpack").exists()
    for extra in (("--list",), ("--check",), ()):
        refused = run_cli("envunpack", f"{ref}:v1", "--prune-cache", "--insecure", *extra)
        assert_one_error_line(refused, "--prune-cache needs --cache DIR")


def _since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {d: n - before.get(d, 0) for d, n in after.items() if n != before.get(d, 0)}


def test_a_tampered_blob_is_refused_before_anything_is_written(
    project: Project, registry: PlainRegistry, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/tamper/env:v1"
    pushed(project, ref)
    manifest = manifest_of(registry, "tamper/env:v1")
    layers = manifest["layers"]
    assert isinstance(layers, list)
    (python,) = [la for la in layers if "/python-3" in la["annotations"][TITLE]]
    blob = registry.blob_file(python["digest"])
    original = blob.read_bytes()
    # Same length, one byte changed: only the hash can tell.
    blob.write_bytes(original[:1000] + bytes([original[1000] ^ 1]) + original[1001:])
    try:
        cache = tmp_path / "cache"
        result = unpack(ref, tmp_path / "app", "--cache", cache)
        assert_one_error_line(result, "served wrong bytes for blob", python["digest"])
        assert not (tmp_path / "app").exists()
        stored = cache / "blobs" / "sha256" / python["digest"].split(":")[1]
        assert not stored.exists()
        assert not [p for p in cache.rglob("*") if p.name.endswith(".part")]
    finally:
        blob.write_bytes(original)


def test_wrong_artifacts_are_refused_with_one_line(
    project: Project, registry: PlainRegistry, tmp_path: Path
) -> None:
    host = registry.host
    out = tmp_path / "app"
    result = unpack(f"oci://{host}/nothing/here:v1", out)
    assert_one_error_line(result, f"{host}/nothing/here has no tag or digest 'v1' (404)")
    pushed(project, f"oci://{host}/wrong/env:v1")
    assert_one_error_line(unpack(f"oci://{host}/wrong/env:v9", out), "no tag or digest 'v9'")
    layout, _ = image_layout(tmp_path / "layout")
    push_layout(
        layout, PushSession(parse_ref(f"oci://{host}/wrong/image:1"), True, SilentReporter())
    )
    result = unpack(f"oci://{host}/wrong/image:1", out)
    assert_one_error_line(
        result, "is not an envpack environment", "application/vnd.oci.image.config.v1+json"
    )
    pushed(project, f"oci://{host}/wrong/arm:v1", "-p", "linux-aarch64")
    result = unpack(f"oci://{host}/wrong/arm:v1", out, "--cache", tmp_path / "cache")
    assert_one_error_line(result, "this archive is for linux-aarch64")
    listed = run_cli("envunpack", "--list", f"oci://{host}/wrong/arm:v1", "--insecure", "--json")
    assert json.loads(listed.stdout)["platform"] == "linux-aarch64"  # --list: any machine's
    closed = free_port()
    result = unpack(f"oci://127.0.0.1:{closed}/env:v1", out)
    assert_one_error_line(result, f"cannot reach the registry 127.0.0.1:{closed}")
    result = run_cli("envunpack", f"oci://{host}/Bad:ref", "-o", out)
    assert_one_error_line(result, "invalid registry reference")
    result = run_cli("envunpack", "env.tar", "--cache", tmp_path / "c", "-o", out)
    assert_one_error_line(result, "--cache and --insecure are for oci:// references only")
    assert list(tmp_path.iterdir()) == [tmp_path / "layout"]  # no app, no cache


def test_auth_from_registry_auth_file_and_secrets_masked(
    project: Project, auth_registry: PlainRegistry, tmp_path: Path
) -> None:
    ref = f"oci://{auth_registry.host}/private/env:v1"
    auth = docker_config(tmp_path / "podman", auth_registry)
    env = {"HOME": str(tmp_path / "home"), "REGISTRY_AUTH_FILE": str(auth)}
    result = run_cli(
        "envpack", project.path, "-o", ref, "--insecure", "--cache", project.cache, env=env
    )
    assert result.returncode == 0, result.stderr.decode()
    result = unpack(ref, tmp_path / "app", "-v", env=env)
    assert result.returncode == 0, result.stderr.decode()
    outputs = [result.stderr.decode() + result.stdout.decode()]
    result = unpack(ref, tmp_path / "denied", env={"HOME": str(tmp_path / "home")})
    assert_one_error_line(result, "needs credentials (401)")
    outputs.append(result.stderr.decode())
    wrong = docker_config(tmp_path / "wrong", auth_registry, password="wrong-pw-123")
    result = unpack(
        ref,
        tmp_path / "denied",
        env={"REGISTRY_AUTH_FILE": str(wrong), "HOME": str(tmp_path / "home")},
    )
    assert_one_error_line(result, "refused the credentials (401)")
    outputs.append(result.stderr.decode())
    assert not (tmp_path / "denied").exists()
    for text in outputs:
        for secret in [*secrets(auth_registry), "wrong-pw-123"]:
            assert secret not in text
    installed = b"".join(
        p.read_bytes() for p in (tmp_path / "app").rglob("*") if p.is_file() and not p.is_symlink()
    )
    assert all(s.encode() not in installed for s in secrets(auth_registry))


def test_pull_to_layout_round_trips_an_image(registry: PlainRegistry, tmp_path: Path) -> None:
    layout, digest = image_layout(tmp_path / "layout")
    ref = f"oci://{registry.host}/base/hello:1"
    push_layout(layout, PushSession(parse_ref(ref), True, SilentReporter()))
    out = tmp_path / "pulled"
    got = pull_to_layout(ref, out, platform="linux/amd64", insecure=True, reporter=SilentReporter())
    assert got == digest
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert (out / "blobs" / "sha256" / blob.name).read_bytes() == blob.read_bytes()
    if shutil.which("skopeo") is not None:
        inspected = subprocess.run(
            ["skopeo", "inspect", f"oci:{out}:1"], capture_output=True, check=True
        )
        assert json.loads(inspected.stdout)["Digest"] == digest
    # The layout is its own cache: pulling again fetches no blob.
    before = sum(registry.blob_gets().values())
    assert pull_to_layout(ref, out, insecure=True, reporter=SilentReporter()) == digest
    assert sum(registry.blob_gets().values()) == before


def test_an_existing_env_is_refused_before_a_blob_is_fetched(
    project: Project, registry: PlainRegistry, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/exists/env:v1"
    pushed(project, ref)
    (tmp_path / "app" / "env").mkdir(parents=True)
    (tmp_path / "app" / "env" / "mine").write_text("keep")
    before = len(registry.access())
    result = unpack(ref, tmp_path / "app", "--cache", tmp_path / "cache")
    assert_one_error_line(result, "already exists; pass --force")
    assert registry.access()[before:] == []  # not even the manifest
    assert not (tmp_path / "cache").exists()
    assert (tmp_path / "app" / "env" / "mine").read_text() == "keep"


def test_403_is_one_line(tmp_path: Path) -> None:
    # A registry (or the proxy before it) that forbids this repository outright.
    files = {"/v2/": b"{}", "/v2/team/env/manifests/v1": b"{}"}
    with FaultServer(files, then={"/v2/team/env/manifests/v1": "403"}) as server:
        host = server.base_url.removeprefix("http://")
        result = unpack(f"oci://{host}/team/env:v1", tmp_path / "app")
    assert_one_error_line(result, f"registry {host} denied access to team/env (403)")
    assert not (tmp_path / "app").exists()


def test_push_and_pull_through_a_bearer_token_registry(
    project: Project, bearer_registry: PlainRegistry, tmp_path: Path
) -> None:
    ref = f"oci://{bearer_registry.host}/tokens/env:v1"
    auth = docker_config(tmp_path / "auth", bearer_registry)
    env = {
        "HOME": str(tmp_path / "home"),
        "REGISTRY_AUTH_FILE": str(auth),
        "REQUESTS_CA_BUNDLE": str(bearer_registry.ca),  # the token server's
    }
    result = run_cli(
        "envpack", project.path, "-o", ref, "--insecure", "--cache", project.cache, env=env
    )
    assert result.returncode == 0, result.stderr.decode()
    result = unpack(ref, tmp_path / "app", env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "app" / "env" / "bin" / "python").exists()
    assert all(secret not in result.stderr.decode() for secret in secrets(bearer_registry))


def test_a_corrupt_cache_entry_is_fetched_again(
    project: Project, registry: PlainRegistry, tmp_path: Path
) -> None:
    ref = f"oci://{registry.host}/recache/env:v1"
    pushed(project, ref)
    cache = tmp_path / "cache"
    assert unpack(ref, tmp_path / "app", "--cache", cache).returncode == 0
    layers = manifest_of(registry, "recache/env:v1")["layers"]
    assert isinstance(layers, list)
    (python,) = [la for la in layers if "/python-3" in la["annotations"][TITLE]]
    cached = cache / "blobs" / "sha256" / python["digest"].split(":")[1]
    cached.write_bytes(b"rotten" + cached.read_bytes()[6:])
    mark = registry.blob_gets()
    result = unpack(ref, tmp_path / "app", "--cache", cache, "--force")
    assert result.returncode == 0, result.stderr.decode()
    assert f"warning: cached blob {python['digest']} is corrupt" in result.stderr.decode()
    assert set(_since(mark, registry.blob_gets())) == {python["digest"]}
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == python["digest"].split(":")[1]


def test_a_login_kept_by_a_credential_helper_is_one_error_line(
    auth_registry: PlainRegistry, tmp_path: Path
) -> None:
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {auth_registry.host: {}}, "credsStore": "desktop"}))
    env = {
        "HOME": str(tmp_path / "home"),
        "DOCKER_CONFIG": str(config.parent),
        "REGISTRY_AUTH_FILE": "",
    }
    result = unpack(f"oci://{auth_registry.host}/private/env:v1", tmp_path / "app", env=env)
    assert_one_error_line(result, "docker-credential-desktop", "not on PATH", str(config))
    assert not (tmp_path / "app").exists()

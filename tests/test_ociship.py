"""`envpack --oci-image` with registries: a `--base` pulled from one, `-o oci://` pushed to one,
and the image's SBOM as its OCI referrer (envpack.packer.ociship and ocisbom), against a real
docker-registry on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.registries import PlainRegistry
from envpack.core.ociref import INDEX_TYPE, TITLE, parse_ref
from envpack.core.progress import SilentReporter
from envpack.packer.ocipush import push_layout
from envpack.packer.ocisbom import EMPTY_MEDIA, SBOM_MEDIA
from envpack.packer.registrypush import PushSession
from envpack.target.ocipull import pull_to_layout
from tests.clirun import assert_one_error_line, run_cli
from tests.ocifixtures import registry
from tests.ocirun import base_from_rootfs, run_bundle

__all__ = ["registry"]  # a fixture, used by name


def skopeo_raw(registry: PlainRegistry, ref: str) -> dict[str, Any]:
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{ref}"],
        capture_output=True,
        check=True,
    ).stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def _pushed_digest(said: str, ref: str) -> str:
    found = re.search(rf"pushed oci://{re.escape(ref)}@(sha256:[0-9a-f]{{64}})", said)
    assert found, said
    return found[1]


def _push_image(project: Path, registry: PlainRegistry, ref: str, cache: Path) -> str:
    """`envpack --oci-image` on the registry's bookworm base, pushed to `ref`: its stderr."""
    result = run_cli(
        *("envpack", project, "--oci-image", "--base", f"oci://{registry.host}/base/bookworm:12"),
        *("-o", f"oci://{ref}", "--insecure", "--cache", cache),
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stderr.decode()


def _pulled_bundle(ref: str, work: Path) -> Path:
    """The image at `ref` pulled into a layout and unpacked by umoci into a runtime bundle."""
    layout, bundle = work / "layout", work / "bundle"
    pull_to_layout(f"oci://{ref}", layout, insecure=True, reporter=SilentReporter())
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:1", str(bundle)],
        check=True,
        capture_output=True,
    )
    return bundle


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel, channel_url: str
) -> Path:
    base = tmp_path_factory.mktemp("ship")
    return lock_for(fixture_channel.lock_v6, channel_url, base / "p").parent


@pytest.fixture(scope="module")
def pushed_image(
    project: Path, registry: PlainRegistry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, int]:
    """The bookworm base pushed to the registry, then the image built on it from there and
    pushed: (the envpack run's stderr, the image's reference, the access log's length
    before that push)."""
    work = tmp_path_factory.mktemp("ship-work")
    layout, _ = base_from_rootfs("bookworm", "amd64", work / "bases")
    push_layout(
        layout,
        PushSession(parse_ref(f"oci://{registry.host}/base/bookworm:12"), True, SilentReporter()),
    )
    ref = f"{registry.host}/apps/fixture:1"
    since = len(registry.access())
    said = _push_image(project, registry, ref, work / "cache")
    return said, ref, since


def test_the_base_from_the_same_registry_is_mounted_not_uploaded(
    pushed_image: tuple[str, str, int], registry: PlainRegistry
) -> None:
    since = pushed_image[2]
    base = skopeo_raw(registry, "base/bookworm:12")
    image = skopeo_raw(registry, "apps/fixture:1")
    base_layers = {layer["digest"]: int(layer["size"]) for layer in base["layers"]}
    assert set(base_layers) <= {layer["digest"] for layer in image["layers"]}
    assert set(registry.mounts(since)) == set(base_layers)
    uploaded = set(registry.uploads(since))
    assert not uploaded & set(base_layers)
    own = {d["digest"]: int(d["size"]) for d in [image["config"], *image["layers"]]}
    env = {d: size for d, size in own.items() if d not in base_layers}
    assert set(env) <= uploaded  # the env's layers and config went up; the rest: the SBOM's
    assert registry.uploaded_bytes(since) < sum(env.values()) + 1_000_000


def test_the_pushed_image_runs_after_a_pull(
    pushed_image: tuple[str, str, int], registry: PlainRegistry, tmp_path: Path
) -> None:
    said, ref, _ = pushed_image
    assert f"pushed oci://{ref}@sha256:" in said
    bundle = _pulled_bundle(ref, tmp_path)
    ran = run_bundle(bundle, "python", "-c", "import ssl, sqlite3; print('ok')")
    assert ran.stdout.strip() == "ok", ran


def test_the_sbom_is_a_referrer_of_the_image(
    pushed_image: tuple[str, str, int], registry: PlainRegistry, tmp_path: Path
) -> None:
    said, ref, _ = pushed_image
    image = skopeo_raw(registry, "apps/fixture:1")
    digest = _pushed_digest(said, ref)
    assert image["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    # The referrers tag schema (distribution 2.8 has no referrers API): an index of them.
    index = skopeo_raw(registry, f"apps/fixture:{digest.replace(':', '-')}")
    assert index["mediaType"] == INDEX_TYPE
    (entry,) = index["manifests"]
    assert entry["artifactType"] == SBOM_MEDIA
    referrer = skopeo_raw(registry, f"apps/fixture@{entry['digest']}")
    assert referrer["subject"]["digest"] == digest
    assert referrer["config"]["mediaType"] == EMPTY_MEDIA
    (layer,) = referrer["layers"]
    assert (layer["mediaType"], layer["annotations"][TITLE]) == (SBOM_MEDIA, "sbom.cdx.json")
    # The referrer's SBOM is byte for byte the one in the image's last layer.
    sbom = registry.blob_file(layer["digest"]).read_bytes()
    bundle = _pulled_bundle(ref, tmp_path)
    assert (bundle / "rootfs" / "app" / "sbom.cdx.json").read_bytes() == sbom
    assert json.loads(sbom)["bomFormat"] == "CycloneDX"


def test_pushing_the_same_image_again_sends_no_blob_and_keeps_one_referrer(
    pushed_image: tuple[str, str, int], project: Path, registry: PlainRegistry, tmp_path: Path
) -> None:
    said, ref, _ = pushed_image
    before = len(registry.access())
    again = _push_image(project, registry, ref, tmp_path / "cache")
    first = _pushed_digest(said, ref)
    assert _pushed_digest(again, ref) == first  # the same image digest
    uploads = [a for a in registry.access()[before:] if a.method in ("POST", "PATCH")]
    assert uploads == []
    index = skopeo_raw(registry, f"apps/fixture:{first.replace(':', '-')}")
    assert len(index["manifests"]) == 1


def test_a_missing_base_tag_is_one_line(
    project: Path, registry: PlainRegistry, tmp_path: Path
) -> None:
    out = tmp_path / "app.oci.tar"
    result = run_cli(
        "envpack",
        project,
        "--oci-image",
        "--base",
        f"oci://{registry.host}/base/bookworm:nope",
        "-o",
        out,
        "--insecure",
    )
    assert_one_error_line(result, "nope")
    assert not out.exists()


def test_the_push_is_the_image_a_file_would_hold(
    pushed_image: tuple[str, str, int], project: Path, registry: PlainRegistry, tmp_path: Path
) -> None:
    """The push goes from the build's blob dir, no archive in between: the same inputs
    written to a file give the very manifest that was pushed."""
    said, ref, _ = pushed_image
    out = tmp_path / "app.oci.tar"
    result = run_cli(
        *("envpack", project, "--oci-image", "--base", f"oci://{registry.host}/base/bookworm:12"),
        *("-o", out, "--insecure", "--cache", tmp_path / "cache"),
    )
    assert result.returncode == 0, result.stderr.decode()
    with tarfile.open(out) as tar:
        index = tar.extractfile("index.json")
        assert index is not None
        (entry,) = json.load(index)["manifests"]
    assert entry["digest"] == _pushed_digest(said, ref)

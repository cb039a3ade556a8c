"""`envpack --oci-image` end to end: real packages, real skopeo and umoci, run under bubblewrap
over the unpacked image (no daemon), on a base made from the debootstrapped bookworm root."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from tests.clirun import assert_one_error_line, run_cli
from tests.ocirun import base_from_rootfs, inspect, manifest_of, run_bundle, unpack
from tests.test_wheels import build_wheel

pytestmark = [pytest.mark.slow, pytest.mark.container]
SMOKE = "import ssl, sqlite3; print('ok')"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oci")


@pytest.fixture(scope="module")
def project(work: Path, fixture_channel: FixtureChannel, channel_url: str) -> Path:
    return lock_for(fixture_channel.lock_v6, channel_url, work / "project").parent


@pytest.fixture(scope="module")
def bookworm(work: Path) -> tuple[Path, Path]:
    return base_from_rootfs("bookworm", "amd64", work / "bases")


def build(project: Path, out: Path, *args: str | Path) -> str:
    result = run_cli(
        "envpack", project, "--oci-image", "-o", out, "--cache", out.parent / "cache", *args
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stderr.decode()


@pytest.fixture(scope="module")
def image(work: Path, project: Path, bookworm: tuple[Path, Path]) -> Path:
    out = work / "app.oci.tar"
    build(project, out, "--base", bookworm[1])
    return out


def test_runs_python_and_hello_c_on_a_bookworm_base(image: Path, project: Path, work: Path) -> None:
    bundle = unpack(image, work / "run")
    smoke = run_bundle(bundle, "python", "-c", SMOKE)
    assert smoke.returncode == 0, smoke.stderr
    assert smoke.stdout == "ok\n"
    hello = run_bundle(bundle, "hello-c")
    assert hello.returncode == 0, hello.stderr
    # hello-c has the install prefix compiled in: the image's, not the build machine's.
    assert "prefix: /app/env" in hello.stdout
    assert str(work) not in hello.stdout
    # The env_vars.d value and CONDA_PREFIX reach the process without activation.
    env = run_bundle(bundle, "sh", "-c", 'echo "$CONDA_PREFIX $FIXTURE_ENV_VAR"')
    assert env.stdout.split() == ["/app/env", _env_var()]
    # With no --cmd, the image runs the env's python (here it reads the empty stdin).
    default = run_bundle(bundle)
    assert default.returncode == 0, default.stderr
    assert (bundle / "rootfs" / "app" / "activate.sh").is_file()
    sbom = json.loads((bundle / "rootfs" / "app" / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"


def _env_var() -> str:
    """FIXTURE_ENV_VAR as the fixture-activation recipe's env_vars.d file states it."""
    recipe = Path(__file__).parent.parent / "devtools/fixtures/recipes/fixture-activation"
    return str(json.loads((recipe / "env_vars.json").read_text())["FIXTURE_ENV_VAR"])


def test_skopeo_reads_platform_labels_and_config(image: Path, project: Path) -> None:
    info = inspect(image)
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")
    lock_sha = hashlib.sha256((project / "pixi.lock").read_bytes()).hexdigest()
    assert info["Labels"]["org.opencontainers.image.revision"] == lock_sha
    config = inspect(image, config=True)["config"]
    path = next(e for e in config["Env"] if e.startswith("PATH="))
    assert path.startswith("PATH=/app/env/bin:")
    assert "CONDA_PREFIX=/app/env" in config["Env"]
    assert inspect(image, config=True)["created"] == "1970-01-01T00:00:00Z"


def test_layers_one_per_package_within_limits(image: Path, bookworm: tuple[Path, Path]) -> None:
    manifest = manifest_of(image)
    base_layers = len(manifest_of(bookworm[1])["layers"])
    ours = manifest["layers"][base_layers:]
    assert 2 <= len(ours) <= 100
    packages = [layer["annotations"]["dev.envpack.packages"] for layer in ours]
    assert packages[-1] == "conda-meta"
    assert any(p == "python" for p in packages)  # a large package alone
    names = [n for p in packages[:-1] for n in p.split(",")]
    assert len(names) == len(set(names))  # every package in exactly one layer
    with tarfile.open(image) as tar:
        blob = tar.extractfile(f"blobs/sha256/{ours[0]['digest'].split(':')[1]}")
        assert blob is not None
        data = blob.read()
    assert data[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(fileobj=gzip.GzipFile(fileobj=io.BytesIO(data))) as layer:
        members = layer.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and not m.uname for m in members)
    assert all(m.name.startswith("app/") or m.name == "app" for m in members)


def test_same_inputs_give_the_same_digest(
    image: Path, project: Path, bookworm: tuple[Path, Path], work: Path
) -> None:
    again = work / "again" / "app.oci.tar"
    again.parent.mkdir()
    build(project, again, "--base", bookworm[1])
    assert again.read_bytes() == image.read_bytes()
    assert inspect(again)["Digest"] == inspect(image)["Digest"]
    # The same base as a layout directory (umoci's own, not skopeo's copy of it): the env's
    # layers are the same blobs.
    layout_form = work / "again" / "from-layout.oci.tar"
    build(project, layout_form, "--base", bookworm[0])
    assert _package_layers(layout_form) == _package_layers(image)


def test_one_more_package_shares_every_other_layer(
    image: Path, project: Path, bookworm: tuple[Path, Path], work: Path
) -> None:
    wheel = build_wheel(work / "wheel")
    other = work / "other" / "app.oci.tar"
    other.parent.mkdir()
    build(project, other, "--base", bookworm[1], "--inject", wheel)
    before = _package_layers(image)
    after = _package_layers(other)
    (changed,) = [k for k in after if "hello_envpack" in k.split(",")]
    was = ",".join(n for n in changed.split(",") if n != "hello_envpack")
    for packages, digest in before.items():
        if packages != was:
            assert after[packages] == digest, packages
    assert len(after) - len(before) == (0 if was else 1)
    bundle = unpack(other, work / "run-other")
    script = run_bundle(bundle, "hello-envpack")
    assert script.returncode == 0, script.stderr
    assert script.stdout == "hello from envpack\n"
    shebang = (bundle / "rootfs/app/env/bin/hello-envpack").read_text().splitlines()[0]
    assert shebang == "#!/app/env/bin/python3.11"


def _package_layers(archive: Path) -> dict[str, str]:
    layers: list[dict[str, Any]] = manifest_of(archive)["layers"]
    found = {
        layer["annotations"]["dev.envpack.packages"]: layer["digest"]
        for layer in layers
        if "annotations" in layer
    }
    found.pop("conda-meta")
    return found


def test_scratch_warns_once_and_holds_only_the_env(project: Path, work: Path) -> None:
    out = work / "scratch" / "app.oci.tar"
    out.parent.mkdir()
    stderr = build(project, out)
    assert "writing image layers" in stderr
    assert "envpack-image-" not in stderr  # only the -o the user named, no temp path
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert sum("FROM scratch" in w for w in warnings) == 1
    # fixture-activation ships an activate.d script: said once, with what to do.
    assert sum("/app/activate.sh" in w for w in warnings) == 1
    bundle = unpack(out, work / "run-scratch")
    assert sorted(p.name for p in (bundle / "rootfs").iterdir()) == ["app"]
    config = inspect(out, config=True)["config"]
    assert config["Cmd"] == ["/app/env/bin/python"]


def test_dest_prefix_entrypoint_and_cmd(
    project: Path, bookworm: tuple[Path, Path], work: Path
) -> None:
    out = work / "opt" / "app.oci.tar"
    out.parent.mkdir()
    build(
        project,
        out,
        "--base",
        bookworm[1],
        "--dest-prefix",
        "/opt/tool",
        "--entrypoint",
        "python -c",
        "--cmd",
        "'import sys; print(sys.prefix)'",
    )
    config = inspect(out, config=True)["config"]
    assert config["Entrypoint"] == ["python", "-c"]
    assert config["Cmd"] == ["import sys; print(sys.prefix)"]
    result = run_bundle(unpack(out, work / "run-opt"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "/opt/tool\n"


def test_aarch64_image_runs_under_qemu(project: Path, work: Path) -> None:
    _, arm_base = base_from_rootfs("bookworm", "arm64", work / "bases-arm")
    out = work / "arm" / "app.oci.tar"
    out.parent.mkdir()
    build(project, out, "-p", "linux-aarch64", "--base", arm_base)
    info = inspect(out, config=True)
    assert (info["architecture"], info.get("variant")) == ("arm64", "v8")
    bundle = unpack(out, work / "run-arm")
    machine = run_bundle(bundle, "python", "-c", "import platform; print(platform.machine())")
    assert machine.returncode == 0, machine.stderr
    assert machine.stdout == "aarch64\n"
    assert run_bundle(bundle, "python", "-c", SMOKE).stdout == "ok\n"
    assert "prefix: /app/env" in run_bundle(bundle, "hello-c").stdout


# --- bad input: one error line, nothing written ---------------------------------------------------


def _refused(project: Path, out: Path, *args: str | Path, needle: str) -> None:
    before = sorted(out.parent.iterdir()) if out.parent.exists() else []
    result = run_cli(
        "envpack", project, "--oci-image", "-o", out, "--cache", out.parent / "c", *args
    )
    assert_one_error_line(result, needle)
    after = sorted(p for p in out.parent.iterdir() if p.name != "c") if out.parent.exists() else []
    assert after == [p for p in before if p.name != "c"]


def test_base_for_another_architecture_is_refused(project: Path, work: Path) -> None:
    arm_layout, _ = base_from_rootfs("bookworm", "arm64", work / "bases-arm2")
    out = work / "bad-arch" / "app.oci.tar"
    out.parent.mkdir()
    _refused(project, out, "--base", arm_layout, needle="linux/arm64")


def test_base_with_an_older_glibc_is_refused(project: Path, work: Path) -> None:
    _, bullseye = base_from_rootfs("bullseye", "amd64", work / "bases-bullseye")
    out = work / "bad-glibc" / "app.oci.tar"
    out.parent.mkdir()
    _refused(project, out, "--base", bullseye, needle="glibc 2.31")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--base", "missing.tar"), "no such file"),
        (("--base", "garbage.tar"), "cannot read it as an OCI archive"),
        (("--create-executable",), "--create-executable"),
        (("--directory-only",), "--directory-only"),
        (("--dest-prefix", "app/env"), "--dest-prefix"),
        (("--dest-prefix", "/"), "--dest-prefix"),
        (("--dest-prefix", "//app"), "--dest-prefix"),
        (("--dest-prefix", "/app/../etc"), "--dest-prefix"),
        (("--cmd", "'unclosed"), "--cmd"),
        (("--sbom-only",), "--sbom-only"),
    ],
)
def test_bad_options_one_line(
    project: Path, tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    (tmp_path / "garbage.tar").write_bytes(b"not a tar at all\n" * 64)
    (tmp_path / "out").mkdir()
    fixed = [str(tmp_path / a) if a.endswith(".tar") else a for a in args]
    _refused(project, tmp_path / "out" / "app.oci.tar", *fixed, needle=needle)


def test_existing_output_needs_force(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "app.oci.tar"
    out.write_bytes(b"precious")
    _refused(project, out, needle="--force")
    assert out.read_bytes() == b"precious"


def test_image_options_without_oci_image(project: Path, tmp_path: Path) -> None:
    for args in (("--base", tmp_path), ("--cmd", "x"), ("--dest-prefix", "/opt/x")):
        result = run_cli("envpack", project, "-o", tmp_path / "env.tar", *args)
        assert_one_error_line(result, f"{args[0]} only makes sense with --oci-image")
        assert not (tmp_path / "env.tar").exists()

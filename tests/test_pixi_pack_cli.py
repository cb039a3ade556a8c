"""pixi-pack's README examples and flag spellings, with `envpack`/`envunpack` in their place.

The examples are those of pixi-pack's README as the pixi docs carry it (deployment/pixi_pack).
Where an example needs something this machine lacks (a win-64 channel, micromamba), the test
says what it runs instead.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
import rattler

from devtools.fixtures.channel import FixtureChannel, lock_for
from tests.clirun import assert_one_error_line, run_cli
from tests.stubunpacker import build_stub_unpacker

HOST = str(rattler.Subdir.current())
REPO = Path(__file__).resolve().parent.parent


def _home(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    return {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home)}


def _ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stderr.decode()


@pytest.fixture
def prod(fixture_project: Path) -> Path:
    """The fixture project with its environment named `prod` and a pixi.toml beside the lock."""
    lock = fixture_project / "pixi.lock"
    lock.write_text(lock.read_text().replace("environments:\n  default:", "environments:\n  prod:"))
    (fixture_project / "pixi.toml").write_text("[workspace]\nname = 'fixture'\n")
    return fixture_project


# --- the README's examples ---------------------------------------------------------------------


def test_pack_environment_platform_manifest_then_unpack(prod: Path, tmp_path: Path) -> None:
    """`pixi-pack --environment prod --platform linux-64 pixi.toml`, then
    `pixi-unpack environment.tar`."""
    env = _home(tmp_path)
    args = ("--environment", "prod", "--platform", HOST, "pixi.toml")
    _ok(run_cli("envpack", *args, cwd=prod, env=env))
    assert (prod / "environment.tar").is_file()
    target = tmp_path / "target"
    target.mkdir()
    shutil.copy(prod / "environment.tar", target)
    _ok(run_cli("envunpack", "environment.tar", cwd=target, env=env))
    assert {"env", "activate.sh", "environment.tar"} <= {p.name for p in target.iterdir()}
    activate = (target / "activate.sh").read_text()
    assert f"{target}/env/bin" in activate
    assert f'CONDA_PREFIX="{target}/env"' in activate or f"CONDA_PREFIX={target}/env" in activate
    scripts = sorted((target / "env" / "etc" / "conda" / "activate.d").glob("*.sh"))
    assert scripts and all(str(s) in activate for s in scripts)


def test_unpack_without_arguments_reads_environment_tar(prod: Path, tmp_path: Path) -> None:
    """pixi-unpack's PACK_FILE defaults to ./environment.tar."""
    env = _home(tmp_path)
    _ok(run_cli("envpack", "-e", "prod", cwd=prod, env=env))
    _ok(run_cli("envunpack", cwd=prod, env=env))
    assert (prod / "env" / "bin" / "python3").exists()


def test_cross_platform_packs(prod: Path, tmp_path: Path) -> None:
    """`pixi-pack --platform win-64`: the fixture channel has linux-64 and linux-aarch64 only,
    so win-64 is a clear error and the other Linux platform is packed instead."""
    env = _home(tmp_path)
    assert_one_error_line(
        run_cli("envpack", "-e", "prod", "--platform", "win-64", cwd=prod, env=env), "win-64"
    )
    other = "linux-aarch64" if HOST == "linux-64" else "linux-64"
    _ok(run_cli("envpack", "-e", "prod", "--platform", other, cwd=prod, env=env))
    # "You can only unpack a pack on a system that has the same platform."
    result = run_cli("envunpack", "environment.tar", "-o", tmp_path / "t", cwd=prod, env=env)
    assert_one_error_line(result, other)


def _built_unpacker() -> Path | None:
    arch = platform.machine()
    dirs = [Path(p) for p in os.environ.get("ENVPACK_UNPACKER_DIR", "").split(":") if p]
    for directory in [*dirs, REPO / "dist"]:
        if (directory / f"envunpack-{arch}-linux").is_file():
            return directory
    return None


def test_self_extracting_binary(prod: Path, tmp_path: Path) -> None:
    """`pixi-pack --create-executable` writes environment.sh; `./environment.sh` unpacks it."""
    unpackers = _built_unpacker()
    if unpackers is None:
        pytest.skip("no built envunpack in dist/ (scripts/build-unpacker makes it)")
    env = {**_home(tmp_path), "ENVPACK_UNPACKER_DIR": str(unpackers)}
    _ok(run_cli("envpack", "-e", "prod", "--create-executable", cwd=prod, env=env))
    run = prod / "environment.sh"
    assert os.access(run, os.X_OK)
    target = tmp_path / "target"
    target.mkdir()
    shutil.copy(run, target)
    result = subprocess.run(["./environment.sh"], cwd=target, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert {"env", "activate.sh", "environment.sh"} <= {p.name for p in target.iterdir()}


def test_pixi_unpack_source(prod: Path, tmp_path: Path) -> None:
    """`--pixi-unpack-source URL` cannot be honoured (one line); a path works as --unpacker."""
    env = _home(tmp_path)
    url = "https://my.mirror/pixi-pack/pixi-unpack-x86_64-unknown-linux-musl"
    refused = run_cli(
        "envpack", "-e", "prod", "--create-executable", "--pixi-unpack-source", url, cwd=prod
    )
    assert_one_error_line(refused, "--pixi-unpack-source", "URL", "path")
    assert not (prod / "environment.sh").exists()
    stub = build_stub_unpacker(prod / "stub").rename(prod / "envunpack-stub")
    args = ("--create-executable", "--pixi-unpack-source", "./envunpack-stub")
    _ok(run_cli("envpack", "-e", "prod", *args, cwd=prod, env=env))
    assert (prod / "environment.sh").read_bytes().startswith(stub.read_bytes())


def test_inject_a_conda_package(prod: Path, fixture_channel: FixtureChannel) -> None:
    """`pixi-pack --inject local-package-1.0.0-hbefa133_0.conda pixi.toml`.

    The fixture channel has no package outside the env, so a local copy of one replaces
    the lock's, which shows the injected file is the one packed.
    """
    local = next((fixture_channel.root / "noarch").glob("tabulate-*.tar.bz2"))
    shutil.copy(local, prod)
    stderr = _ok(run_cli("envpack", "-e", "prod", "--inject", local.name, "pixi.toml", cwd=prod))
    assert "replaces tabulate" in stderr
    _ok(run_cli("envpack", "-e", "prod", "-i", local.name, "-o", "short.tar", cwd=prod))


def test_inject_a_wheel_ignoring_sdists(prod: Path, tmp_path: Path) -> None:
    """`pixi-pack --ignore-pypi-non-wheel --inject my_webserver-0.1.0-py3-none-any.whl`."""
    from tests.test_wheels import build_wheel

    wheel = build_wheel(tmp_path / "w")
    shutil.copy(wheel, prod)
    args = ("--ignore-pypi-non-wheel", "--inject", wheel.name)
    _ok(run_cli("envpack", "-e", "prod", *args, cwd=prod, env=_home(tmp_path)))
    listing = run_cli("envunpack", "--list", "environment.tar", cwd=prod)
    assert f"pypi/{wheel.name}" in listing.stdout.decode()


def test_config_mirrors_s3_and_concurrency(
    fixture_channel: FixtureChannel, channel_url: str, tmp_path: Path
) -> None:
    """`pixi-pack --config config.toml` with the README's [mirrors], [s3-options], [concurrency]."""
    dead = "http://127.0.0.1:9/origin"
    project = lock_for(fixture_channel.lock_v6, dead, tmp_path / "project").parent
    config = tmp_path / "config.toml"
    config.write_text(
        f'[mirrors]\n"{dead}" = ["{channel_url}"]\n\n'
        '[s3-options.my-s3-bucket]\nendpoint-url = "https://s3.eu-central-1.amazonaws.com"\n'
        'region = "eu-central-1"\nforce-path-style = false\n\n[concurrency]\ndownloads = 5\n'
    )
    env = _home(tmp_path)
    result = run_cli("envpack", project, "--config", config, "-o", tmp_path / "e.tar", env=env)
    stderr = _ok(result)
    # The mirror was used (the lock's origin is dead); s3-options are rattler's to use.
    assert not [line for line in stderr.splitlines() if line.startswith("warning")], stderr
    again = run_cli("envpack", project, "-c", config, "-o", tmp_path / "f.tar", "-q", env=env)
    _ok(again)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[[")
    assert_one_error_line(run_cli("envpack", project, "-c", bad, "--dry-run"), str(bad))


def test_use_cache(fixture_project: Path, tmp_path: Path, channel_url: str) -> None:
    """`pixi-pack --use-cache ~/.pixi-pack/cache`: the second pack needs no network."""
    env = _home(tmp_path)
    cache = Path(env["HOME"]) / ".pixi-pack" / "cache"
    _ok(run_cli("envpack", fixture_project, "--use-cache", cache, "-o", tmp_path / "a", env=env))
    offline = ("--mirror", f"{channel_url}=http://127.0.0.1:9", "--retries", "1")
    second = run_cli(
        "envpack", fixture_project, "--use-cache", cache, "-o", tmp_path / "b", *offline, env=env
    )
    _ok(second)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_unpacking_without_envunpack(prod: Path, tmp_path: Path) -> None:
    """`tar -xvf environment.tar; micromamba create -p ./env --file environment.yml`.

    No micromamba or conda here: rattler, the solver and installer pixi and micromamba are
    built on, takes the same channel and specs instead.
    """
    _ok(run_cli("envpack", "-e", "prod", cwd=prod, env=_home(tmp_path)))
    out = tmp_path / "x"
    out.mkdir()
    # GNU tar recognises zstd by itself; the default archive needs no flag for it.
    subprocess.run(["tar", "-xf", str(prod / "environment.tar"), "-C", str(out)], check=True)
    text = (out / "environment.yml").read_text()
    assert text.startswith("channels:\n  - ./channel\n  - nodefaults\ndependencies:\n")
    # conda's `name=version=build`, spelled as a strict MatchSpec.
    exact = [line[4:].split("=") for line in text.split("dependencies:\n")[1].splitlines()]
    specs = [f"{name} =={version} {build}" for name, version, build in exact]
    channel = rattler.Channel(str(out / "channel"))
    records = asyncio.run(
        rattler.solve(
            [channel],
            specs,
            platforms=[rattler.Subdir.current(), rattler.Subdir("noarch")],
            virtual_packages=rattler.VirtualPackage.detect(),
        )
    )
    asyncio.run(
        rattler.install(
            records, target_prefix=out / "env", cache_dir=tmp_path / "rc", show_progress=False
        )
    )
    assert (out / "env" / "bin" / "hello-c").exists()


# --- flag spellings that make no sense here --------------------------------------------------


@pytest.mark.parametrize(("shell", "why"), [("cmd", "Windows"), ("nushell", "nushell")])
def test_shells_we_cannot_write(prod: Path, tmp_path: Path, shell: str, why: str) -> None:
    _ok(run_cli("envpack", "-e", "prod", "-q", cwd=prod, env=_home(tmp_path)))
    result = run_cli("envunpack", prod / "environment.tar", "-o", tmp_path / "t", "-s", shell)
    stderr = _ok(result)
    warnings = [line for line in stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and why in warnings[0] and "bash" in warnings[0], stderr
    assert (tmp_path / "t" / "activate.sh").is_file()


def test_pixi_pack_spellings_in_help() -> None:
    pack_help = run_cli("envpack", "--help", env={"COLUMNS": "200"}).stdout.decode()
    for flag in ("--output-file", "--use-cache", "--pixi-unpack-source", "--config", "--inject"):
        assert flag in pack_help, flag
    unpack_help = run_cli("envunpack", "--help", env={"COLUMNS": "200"}).stdout.decode()
    for flag in ("--output-directory", "--env-name", "--shell", "-s"):
        assert flag in unpack_help, flag


def test_output_file_and_verbosity(fixture_project: Path, tmp_path: Path) -> None:
    out = tmp_path / "via-output-file.tar"
    env = _home(tmp_path)
    _ok(run_cli("envpack", fixture_project, "--output-file", out, "-vv", env=env))
    assert out.is_file()


def test_unpack_short_flags(prod: Path, tmp_path: Path) -> None:
    """pixi-unpack's `-o DIR -e NAME -s SHELL`, all short."""
    _ok(run_cli("envpack", "-e", "prod", "-q", cwd=prod, env=_home(tmp_path)))
    out = tmp_path / "t"
    _ok(run_cli("envunpack", prod / "environment.tar", "-o", out, "-e", "myenv", "-s", "zsh"))
    assert (out / "myenv" / "bin" / "python3").exists()
    assert f"{out}/myenv/bin" in (out / "activate.sh").read_text()


def test_an_existing_pixi_pack_cache_is_reused(
    fixture_project: Path, fixture_channel: FixtureChannel, tmp_path: Path, channel_url: str
) -> None:
    """pixi-pack's cache keeps a channel's layout (`<subdir>/<file>`), as the channel does."""
    cache = tmp_path / "pixi-pack-cache"
    shutil.copytree(fixture_channel.root, cache)
    offline = ("--mirror", f"{channel_url}=http://127.0.0.1:9", "--retries", "1")
    out = tmp_path / "e.tar"
    env = _home(tmp_path)
    _ok(run_cli("envpack", fixture_project, "--use-cache", cache, "-o", out, *offline, env=env))
    bad = next((cache / "noarch").glob("tabulate-*"))
    bad.write_bytes(bad.read_bytes() + b"\0")
    out.unlink()
    again = run_cli("envpack", fixture_project, "--use-cache", cache, "-o", out, env=env)
    assert_one_error_line(again, str(bad), "hash")
    assert not out.exists()

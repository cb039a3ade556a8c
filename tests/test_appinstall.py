"""What envunpack --app writes for the launcher, and --remove-app, on the real fixture env."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from envpack.core.errors import EnvpackError
from envpack.target.appinstall import COMPLETE, ENV_FILE, SHELL_MARKER, remove_app
from tests.clirun import assert_one_error_line, run_cli

SHA = "ab" * 32


@pytest.fixture(scope="module")
def app_dir(archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("apps") / SHA
    result = run_cli("envunpack", archives["zstd"], "-o", target, "-q", "--app")
    assert result.returncode == 0, result.stderr.decode()
    return target


def test_app_env_is_the_activation_as_data(app_dir: Path) -> None:
    raw = (app_dir / ENV_FILE).read_bytes()
    assert raw.endswith(b"\0")
    variables = dict(entry.split("=", 1) for entry in raw.decode().split("\0")[:-1])
    prefix = str(app_dir / "env")
    assert variables["PATH"] == f"{prefix}/bin"  # the launcher puts the caller's PATH after it
    assert variables["CONDA_PREFIX"] == prefix
    assert variables["FIXTURE_ENV_VAR"] == "from-env-vars-d"  # env_vars.d
    # fixture-activation ships an activate.d script: the launcher will source activate.sh.
    assert (app_dir / SHELL_MARKER).exists()


def test_app_env_matches_what_activate_sh_exports(app_dir: Path) -> None:
    raw = (app_dir / ENV_FILE).read_bytes().decode().split("\0")[:-1]
    names = [entry.split("=", 1)[0] for entry in raw if not entry.startswith("PATH=")]
    shown = subprocess.run(
        [
            "/bin/sh",
            "-c",
            f'. "$1"; for n in {" ".join(names)}; do eval "echo $n=\\$$n"; done',
            "sh",
            app_dir / "activate.sh",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    assert shown == [entry for entry in raw if not entry.startswith("PATH=")]


def test_remove_app(archives: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / SHA
    assert run_cli("envunpack", archives["zstd"], "-o", target, "-q", "--app").returncode == 0
    (target / COMPLETE).write_text(SHA)
    (tmp_path / f"{SHA}.lock").write_text("")
    result = run_cli("envunpack", "--remove-app", target)
    assert result.returncode == 0, result.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def test_remove_app_refuses_what_is_not_an_install(tmp_path: Path) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    with pytest.raises(EnvpackError, match="not an app install"):
        remove_app(precious)
    assert_one_error_line(run_cli("envunpack", "--remove-app", precious), "not an app install")
    assert precious.is_dir()

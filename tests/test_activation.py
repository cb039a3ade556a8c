"""activation: rattler's activate scripts and our deactivate, run in real shells."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from envpack.target.activation import SHELLS, activation_scripts, script_names


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    """A prefix as an unpacked env has it: bin, an env var file, an activate.d script."""
    env = tmp_path / "app" / "env"
    (env / "bin").mkdir(parents=True)
    (env / "conda-meta").mkdir()
    tool = env / "bin" / "envpack-test-tool"
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    env_vars = env / "etc" / "conda" / "env_vars.d"
    env_vars.mkdir(parents=True)
    (env_vars / "fixture.json").write_text(json.dumps({"FIXTURE_VAR": "from-env-vars"}))
    (env / "conda-meta" / "state").write_text(json.dumps({"env_vars": {"STATE_VAR": "s"}}))
    return env


def test_script_names() -> None:
    assert script_names("bash") == ("activate.sh", "deactivate.sh")
    assert script_names("sh") == ("activate.sh", "deactivate.sh")
    assert script_names("fish") == ("activate.fish", "deactivate.fish")
    assert script_names("powershell") == ("activate.ps1",)
    assert script_names("xonsh") == ("activate.xsh",)
    # Unknown shells are refused elsewhere; the names default to sh.
    assert script_names("cmd") == ("activate.sh", "deactivate.sh")
    for shell in SHELLS:
        scripts = activation_scripts(Path("/opt/app/env"), shell, "linux-64")
        assert tuple(scripts) == script_names(shell)


def test_activate_carries_no_path_of_the_unpacking_process(prefix: Path) -> None:
    saved = os.environ["PATH"]
    scripts = activation_scripts(prefix, "bash", "linux-64")
    assert os.environ["PATH"] == saved
    assert "envpack-path-marker" not in scripts["activate.sh"]
    for directory in saved.split(":"):
        if directory and directory != "/usr/bin" and directory != "/bin":
            assert f":{directory}" not in scripts["activate.sh"], directory
    assert f"{prefix}/bin" in scripts["activate.sh"]


def _sh(prefix: Path, script: str) -> str:
    return subprocess.run(
        ["/bin/sh", "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
        cwd=prefix.parent,
    ).stdout


def test_activate_then_deactivate_in_sh(prefix: Path) -> None:
    for name, content in activation_scripts(prefix, "sh", "linux-64").items():
        (prefix.parent / name).write_text(content)
    out = _sh(
        prefix,
        ". ./activate.sh && envpack-test-tool && echo prefix=$CONDA_PREFIX var=$FIXTURE_VAR && "
        ". ./deactivate.sh && echo path=$PATH && echo after=${CONDA_PREFIX:-unset} "
        "${FIXTURE_VAR:-novar} ${STATE_VAR:-nostate}",
    )
    lines = out.splitlines()
    assert lines[0] == "tool ran"
    assert lines[1] == f"prefix={prefix} var=from-env-vars"
    assert lines[2] == "path=/usr/bin:/bin"
    assert lines[3] == "after=unset novar nostate"


def test_deactivate_lists_the_env_vars_to_unset(prefix: Path) -> None:
    deactivate = activation_scripts(prefix, "bash", "linux-64")["deactivate.sh"]
    unset = [line for line in deactivate.splitlines() if line.startswith("unset ")][-1]
    assert unset.split()[1:] == ["CONDA_PREFIX", "CONDA_SHLVL", "FIXTURE_VAR", "STATE_VAR"]
    # Names that no shell could unset are left out.
    (prefix / "etc" / "conda" / "env_vars.d" / "odd.json").write_text('{"NOT-A-NAME": "x"}')
    assert activation_scripts(prefix, "bash", "linux-64")["deactivate.sh"] == deactivate


def test_fish_deactivate_removes_the_bin_dir(prefix: Path) -> None:
    scripts = activation_scripts(prefix, "fish", "linux-64")
    assert f"{prefix}/bin" in scripts["activate.fish"]
    assert f"string match -v -- {prefix}/bin $PATH" in scripts["deactivate.fish"]
    if shutil.which("fish"):
        for name, content in scripts.items():
            (prefix.parent / name).write_text(content)
        out = subprocess.run(
            ["fish", "-c", "source activate.fish; source deactivate.fish; echo $PATH"],
            capture_output=True,
            text=True,
            cwd=prefix.parent,
            check=True,
        ).stdout
        assert f"{prefix}/bin" not in out


def test_a_malformed_env_vars_file_is_named_before_activation(tmp_path: Path) -> None:
    from envpack.core.errors import InstallError
    from envpack.target.activation import check_env_vars

    env_vars = tmp_path / "etc" / "conda" / "env_vars.d"
    env_vars.mkdir(parents=True)
    (env_vars / "good.json").write_text('{"A": "1"}')
    check_env_vars(tmp_path)
    (env_vars / "bad.json").write_text("{not json")
    with pytest.raises(InstallError, match=r"env_vars\.d/bad\.json"):
        check_env_vars(tmp_path)

"""Activation scripts beside the env: rattler writes activate; deactivate undoes exactly that."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from rattler import Subdir
from rattler.shell import ActivationVariables, Shell, activate

from envpack.core.errors import InstallError

SHELLS: dict[str, tuple[Shell, str]] = {
    "bash": (Shell.bash, "sh"),
    "zsh": (Shell.zsh, "sh"),
    "sh": (Shell.bash, "sh"),
    "fish": (Shell.fish, "fish"),
    "xonsh": (Shell.xonsh, "xsh"),
    "powershell": (Shell.powershell, "ps1"),
}
# rattler appends the *current* PATH of the process that generates the script; the unpacker's
# PATH means nothing on the user's shell, so we hand it a marker and drop it again.
_MARKER = "/envpack-path-marker"


def check_env_vars(prefix: Path) -> None:
    """rattler's activation raises on a malformed `etc/conda/env_vars.d/*.json`; refuse such a
    package's env before it is swapped into place, naming the file, not after."""
    for path in sorted((prefix / "etc" / "conda" / "env_vars.d").glob("*.json")):
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            doc = None
        if not isinstance(doc, dict):
            raise InstallError(
                f"etc/conda/env_vars.d/{path.name} is not a JSON object; the package that "
                "ships it is broken, so the environment cannot be activated"
            )


def script_names(shell: str) -> tuple[str, ...]:
    """The files `activation_scripts` writes beside the env for `shell`."""
    ext = SHELLS[shell][1] if shell in SHELLS else "sh"
    return (
        (f"activate.{ext}", f"deactivate.{ext}") if ext in ("sh", "fish") else (f"activate.{ext}",)
    )


def activation_scripts(prefix: Path, shell: str, platform: str) -> dict[str, str]:
    """Return {file name: content} for the activate and deactivate scripts of `prefix`."""
    kind, ext = SHELLS[shell]
    saved = os.environ.get("PATH")
    os.environ["PATH"] = _MARKER
    try:
        result = activate(prefix, ActivationVariables(), kind, Subdir(platform))
    finally:
        if saved is None:
            del os.environ["PATH"]
        else:
            os.environ["PATH"] = saved
    script = result.script.replace(f":{_MARKER}", "").replace(_MARKER, "")
    scripts = {f"activate.{ext}": script}
    if ext == "sh":
        scripts["deactivate.sh"] = _posix_deactivate(prefix)
    elif ext == "fish":
        scripts["deactivate.fish"] = _fish_deactivate(prefix)
    return scripts


def _env_var_names(prefix: Path) -> list[str]:
    names: set[str] = set()
    state = prefix / "conda-meta" / "state"
    sources = sorted((prefix / "etc" / "conda" / "env_vars.d").glob("*.json"))
    for path in [*sources, state]:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            names.update(k for k in (doc.get("env_vars") or doc) if isinstance(k, str))
    return sorted(n for n in names if n.isidentifier())


def _posix_deactivate(prefix: Path) -> str:
    bin_dir = str(prefix / "bin")
    deactivate_d = shlex.quote(str(prefix / "etc" / "conda" / "deactivate.d"))
    unset = " ".join(["CONDA_PREFIX", "CONDA_SHLVL", *_env_var_names(prefix)])
    return f"""# Undo activate.sh: source this file (". ./deactivate.sh") in the same shell.
for _envpack_f in {deactivate_d}/*.sh; do
    [ -f "$_envpack_f" ] && . "$_envpack_f"
done
unset _envpack_f
PATH=$(printf '%s' ":$PATH:" | sed -e "s|:{bin_dir}:|:|g" -e 's|^:||' -e 's|:$||')
export PATH
unset {unset}
"""


def _fish_deactivate(prefix: Path) -> str:
    bin_dir = str(prefix / "bin")
    unset = " ".join(["CONDA_PREFIX", "CONDA_SHLVL", *_env_var_names(prefix)])
    return f"""# Undo activate.fish: source this file in the same shell.
set -gx PATH (string match -v -- {shlex.quote(bin_dir)} $PATH)
set -e {unset}
"""

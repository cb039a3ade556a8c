"""What envunpack adds for an app file's launcher: the activation as data, and removal.

The launcher (launcher/launcher.c) execs the app with no shell, so the activation that
rattler computes is written once, at install time, as `app.env`: NUL-separated NAME=VALUE,
where PATH holds only the env's own directories (the launcher puts them before the PATH it
was started with). activate.d scripts are shell code: their presence is marked by
`app.activate-d`, and the launcher then sources activate.sh with /bin/sh when there is one.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from rattler import Subdir
from rattler.shell import ActivationVariables, Shell, activate

from envpack.core.errors import EnvpackError, output_error

ENV_FILE = "app.env"
SHELL_MARKER = "app.activate-d"
COMPLETE = ".envpack-complete"
_MARKER = "/envpack-path-marker"


def activated_env(prefix: Path, platform: str) -> tuple[dict[str, str], bool]:
    """The variables rattler's activation sets for `prefix`, and whether it sources scripts."""
    saved = os.environ.get("PATH")
    os.environ["PATH"] = _MARKER  # rattler appends the current PATH: drop it again below
    try:
        result = activate(prefix, ActivationVariables(), Shell.bash, Subdir(platform))
    finally:
        if saved is None:
            del os.environ["PATH"]
        else:
            os.environ["PATH"] = saved
    variables: dict[str, str] = {}
    sources = False
    for line in result.script.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            variables[name] = value
        elif words and words[0] in (".", "source"):
            sources = True
    # rattler's stub says Path; at run time it is the list of PATH entries.
    entries: object = result.path
    listed = entries if isinstance(entries, list) else [entries]
    variables["PATH"] = ":".join(str(p) for p in listed if str(p) != _MARKER)
    return variables, sources


def write_app_env(target: Path, prefix: Path, platform: str) -> bool:
    """Write `app.env` (and the activate.d marker) into `target`; True if a shell is wanted."""
    variables, sources = activated_env(prefix, platform)
    data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in variables.items())
    if len(data) >= 65535:
        raise EnvpackError(f"the activation of {prefix} sets more than 64 KiB of variables")
    partial = target / (ENV_FILE + ".part")
    marker = target / SHELL_MARKER
    try:
        partial.write_bytes(data)
        if sources:
            marker.write_bytes(b"")
        else:
            marker.unlink(missing_ok=True)
        partial.rename(target / ENV_FILE)
    except OSError as exc:
        raise output_error(target, exc, "writing the app's activation") from None
    return sources


def remove_app(directory: Path) -> None:
    """`--envpack-uninstall`: the marker goes first, so a half-removed app never runs."""
    name = directory.name
    if len(name) != 64 or any(c not in "0123456789abcdef" for c in name):
        raise EnvpackError(f"{directory} is not an app install (named by a sha256)")
    try:
        (directory / COMPLETE).unlink(missing_ok=True)
        shutil.rmtree(directory)
        directory.with_name(name + ".lock").unlink(missing_ok=True)
    except OSError as exc:
        raise output_error(directory, exc, "removing the app") from None

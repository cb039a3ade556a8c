"""App files (`--create-executable --entrypoint python`) in bare roots, with the frozen build.

The entrypoint is the env's own python, so each run's program says what it saw: its
arguments, its activation and its pid. Runs inside one target share its app home.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.httpserver import serve_directory
from envpack.core import selfextract
from tests.clirun import run_cli
from tests.containers.conftest import TargetFactory
from tests.containers.harness import EMPTY_TARGET

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
UNPACKER = ROOT / "dist" / "envunpack-x86_64-linux"
ARM_UNPACKER = ROOT / "dist" / "envunpack-aarch64-linux"
HOME = "/tmp/apps"
SAW = (
    "import os, sys; print('argv', sys.argv[1:]); "
    "print('vars', os.environ.get('FIXTURE_ENV_VAR'), os.environ.get('CONDA_PREFIX')); "
    "sys.exit(int(sys.argv[1]))"
)


def _tools(base: Path) -> Path:
    """The static envunpack(s) and freshly built launchers, side by side as envpack looks."""
    if not UNPACKER.is_file():
        pytest.skip(f"{UNPACKER.name} is not built: run scripts/build-unpacker")
    tools = base / "tools"
    tools.mkdir()
    for unpacker in (UNPACKER, ARM_UNPACKER):
        if unpacker.is_file():
            (tools / unpacker.name).symlink_to(unpacker)
    subprocess.run([ROOT / "scripts" / "build-launcher", "--out", tools], check=True)
    return tools


def _make_app(
    project: Path, unpacker: Path, entrypoint: str, out: Path, *extra: str | Path
) -> Path:
    result = run_cli(
        *("envpack", project, "--create-executable", "--unpacker", unpacker),
        *("--entrypoint", entrypoint, "-o", out, "-q", *extra),
    )
    assert result.returncode == 0, result.stderr.decode()
    return out


@pytest.fixture(scope="module")
def app_files(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel
) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("app")
    tools = _tools(base)
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_v6, url, base / "project").parent
        cache = ("--cache", base / "c")
        app = _make_app(project, tools / UNPACKER.name, "python", base / "app.run", *cache)
        files = {"app": app}
        if ARM_UNPACKER.is_file():
            files["arm"] = _make_app(
                project,
                tools / ARM_UNPACKER.name,
                "python",
                base / "app-arm.run",
                *("-p", "linux-aarch64", *cache),
            )
    payload = selfextract.find_payload(app)
    assert payload is not None
    bad = base / "bad.run"
    data = bytearray(app.read_bytes())
    data[payload.offset + payload.length // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    bad.chmod(0o755)
    return {**files, "bad": bad}


def _lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize(
    ("suite", "arch"), [("bookworm", "amd64"), ("trixie", "amd64"), ("bookworm", "arm64")]
)
def test_first_and_second_run(
    bare_target: TargetFactory, app_files: dict[str, Path], suite: str, arch: str
) -> None:
    key = "app" if arch == "amd64" else "arm"
    if key not in app_files:
        pytest.skip(f"{ARM_UNPACKER.name} is not built: run scripts/build-unpacker --arch aarch64")
    # The second run gets a TMPDIR where staticx cannot unpack itself: it would fail if it
    # started envunpack at all.
    script = f"""
export ENVPACK_APP_HOME={HOME}
/work/app.run -c "{SAW}" 7 'two words'; echo "rc=$?"
TMPDIR=/nonexistent /work/app.run -c "{SAW}" 3 x; echo "rc=$?"
/work/app.run --envpack-info
"""
    result = bare_target(suite, arch).run(
        script, files={"/work/app.run": app_files[key]}, timeout=900
    )
    out = result.stdout
    assert _lines(out, "argv") == ["argv ['7', 'two words']", "argv ['3', 'x']"], result
    assert _lines(out, "rc=") == ["rc=7", "rc=3"], result
    prefix = _lines(out, "install dir:")[0].split()[-1] + "/env"
    assert prefix.startswith(HOME + "/")
    assert _lines(out, "vars") == [f"vars from-env-vars-d {prefix}"] * 2, result
    assert "installed:      yes" in out


def test_sigterm_reaches_the_app_which_is_execd(
    bare_target: TargetFactory, app_files: dict[str, Path]
) -> None:
    handler = (
        "import os, signal, sys, time; "
        "signal.signal(signal.SIGTERM, lambda *a: (print('TERM', flush=True), sys.exit(42))); "
        "open('/tmp/pid', 'w').write(str(os.getpid())); time.sleep(60)"
    )
    script = f"""
export ENVPACK_APP_HOME={HOME}
/work/app.run -c 'pass'
/work/app.run -c "{handler}" & pid=$!
while [ ! -s /tmp/pid ]; do sleep 0.05; done
echo "same pid: $([ "$(cat /tmp/pid)" = "$pid" ] && echo yes || echo no)"
kill -TERM $pid; wait $pid; echo "rc=$?"
"""
    result = bare_target("bookworm", "amd64").run(script, files={"/work/app.run": app_files["app"]})
    assert "same pid: yes" in result.stdout, result
    assert "TERM" in result.stdout and "rc=42" in result.stdout, result


def test_two_concurrent_first_runs_install_once(
    bare_target: TargetFactory, app_files: dict[str, Path]
) -> None:
    script = f"""
export ENVPACK_APP_HOME={HOME}
/work/app.run -c "{SAW}" 0 one > /tmp/one 2>&1 & a=$!
/work/app.run -c "{SAW}" 0 two > /tmp/two 2>&1 & b=$!
wait $a; echo "rc=$?"; wait $b; echo "rc=$?"
cat /tmp/one /tmp/two
ls -a {HOME}
"""
    result = bare_target("bookworm", "amd64").run(script, files={"/work/app.run": app_files["app"]})
    out = result.stdout
    assert _lines(out, "rc=") == ["rc=0", "rc=0"], result
    assert sorted(_lines(out, "argv")) == ["argv ['0', 'one']", "argv ['0', 'two']"], result
    # One install and its lock; no staging, no leftover envunpack copy.
    listing = [n for n in out.splitlines()[-5:] if n and n not in (".", "..")]
    assert len([n for n in listing if len(n) == 64]) == 1, out
    assert not [n for n in listing if "envunpack" in n or "staging" in n], out


def test_sigkill_during_the_first_run_then_a_run_that_completes(
    bare_target: TargetFactory, app_files: dict[str, Path]
) -> None:
    # setsid: the run gets its own process group, so the kill takes envunpack with it.
    script = f"""
export ENVPACK_APP_HOME={HOME}
setsid /work/app.run -c 'print("first ran")' & pid=$!
until ls -d {HOME}/*/.envpack-staging-* >/dev/null 2>&1; do sleep 0.02; done
kill -9 -$pid; wait $pid; echo "killed rc=$?"
ls {HOME}/*/.envpack-complete 2>/dev/null || echo "no marker"
/work/app.run -c "{SAW}" 5 after; echo "rc=$?"
ls -A {HOME}/*/ {HOME} | grep -c -e envunpack -e staging
"""
    result = bare_target("bookworm", "amd64").run(script, files={"/work/app.run": app_files["app"]})
    out = result.stdout
    assert "killed rc=137" in out and "no marker" in out, result
    assert "first ran" not in out, result
    assert "argv ['5', 'after']" in out and "rc=5" in out, result
    assert out.splitlines()[-1] == "0", result  # no staging, no copy of envunpack left


def test_corrupted_payload_is_refused_before_anything_runs(
    bare_target: TargetFactory, app_files: dict[str, Path]
) -> None:
    script = f"""
export ENVPACK_APP_HOME={HOME}
/work/bad.run -c 'print("RAN")'; echo "rc=$?"
ls -a {HOME}/*/
"""
    result = bare_target("bookworm", "amd64").run(script, files={"/work/bad.run": app_files["bad"]})
    assert "RAN" not in result.stdout
    assert "rc=0" not in result.stdout, result
    errors = _lines(result.stderr, "error:")
    assert len(errors) == 1 and "corrupt" in errors[0], result
    assert ".envpack-complete" not in result.stdout and "env\n" not in result.stdout, result


def test_unwritable_app_home_is_one_error_line(
    bare_target: TargetFactory, app_files: dict[str, Path]
) -> None:
    # /proc refuses mkdir even to root.
    result = bare_target("bookworm", "amd64").run(
        "ENVPACK_APP_HOME=/proc/apps /work/app.run -c 'print(1)'",
        files={"/work/app.run": app_files["app"]},
    )
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code != 0 and not result.stdout, result
    assert len(errors) == 1 and errors[0].startswith("error: "), result
    assert "ENVPACK_APP_HOME" in errors[0] and "/proc/apps" in errors[0], result


@pytest.fixture(scope="module")
def static_app(tmp_path_factory: pytest.TempPathFactory, fixture_channel: FixtureChannel) -> Path:
    """An app file whose env is busybox alone, a static program: it needs no glibc at all."""
    base = tmp_path_factory.mktemp("static-app")
    tools = _tools(base)
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_static, url, base / "project").parent
        return _make_app(project, tools / UNPACKER.name, "busybox", base / "busybox.run")


def test_first_and_second_run_in_the_empty_root(
    bare_target: TargetFactory, static_app: Path
) -> None:
    """No libc and no shell but the app's own: the first run installs and execs busybox,
    whose sh runs the second run (from the installed env, without starting envunpack: its
    TMPDIR would stop staticx) and passes an exit code back."""
    script = (
        'echo "first run: $1"; '
        'TMPDIR=/nonexistent /work/app.run echo "second run"; echo "rc=$?"; '
        "/work/app.run sh -c 'exit 7'; echo \"rc=$?\"; "
        "/work/app.run --envpack-info"
    )
    result = bare_target(*EMPTY_TARGET).run(
        ["/work/app.run", "sh", "-c", script, "sh", "an arg"],
        files={"/work/app.run": static_app},
    )
    out = result.stdout
    assert result.exit_code == 0, result
    assert _lines(out, "first run") == ["first run: an arg"], result
    assert _lines(out, "second run") == ["second run"], result
    assert _lines(out, "rc=") == ["rc=0", "rc=7"], result
    assert "installed:      yes" in out and "entrypoint:     busybox" in out, result


@pytest.mark.parametrize("suite", [EMPTY_TARGET[0], "bullseye"])
def test_targets_without_the_envs_glibc(
    bare_target: TargetFactory, app_files: dict[str, Path], suite: str
) -> None:
    """The empty root (no libc, no shell) and Debian 11 (glibc 2.31; the fixture's python
    needs 2.36): the launcher runs, and envunpack refuses the env before anything runs."""
    target = bare_target(suite, "amd64")
    files = {"/work/app.run": app_files["app"]}
    info = target.run(["/work/app.run", "--envpack-info"], files=files)
    assert info.exit_code == 0, info
    assert "installed:      no" in info.stdout and "entrypoint:     python" in info.stdout
    run = target.run(["/work/app.run", "-c", "print('RAN')"], files=files)
    assert run.exit_code != 0 and "RAN" not in run.stdout, run
    errors = _lines(run.stderr, "error:")
    assert len(errors) == 1 and "glibc" in errors[0], run


def test_operator_flags(bare_target: TargetFactory, app_files: dict[str, Path]) -> None:
    script = f"""
export ENVPACK_APP_HOME={HOME}
/work/app.run --envpack-unpack /opt/app; echo "unpack rc=$?"
/opt/app/env/bin/python -c 'print("unpacked python runs")'
/work/app.run -c 'print("installed")'
/work/app.run --envpack-uninstall; echo "uninstall rc=$?"
ls -A {HOME} | wc -l
/work/app.run --envpack-info | grep installed:
"""
    result = bare_target("bookworm", "amd64").run(script, files={"/work/app.run": app_files["app"]})
    out = result.stdout.splitlines()
    assert "unpack rc=0" in out and "unpacked python runs" in out and "installed" in out, result
    assert "uninstall rc=0" in out and "0" in out, result
    assert out[-1] == "installed:      no", result

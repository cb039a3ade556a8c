"""The harness itself: every target is the bare system the end-to-end tests rely on.

One probe run per target and backend gathers the facts (suite, arch, python, network,
environment, copied files, writable dirs); the tests below each check one of them, so a
failure names the property that broke.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from devtools import rootfs
from devtools.rootfs import EMPTY, RootfsError
from tests.containers.harness import (
    CLEAN_ENV,
    EMPTY_TARGET,
    EXIT_NOT_FOUND,
    SUITES,
    RunResult,
    Target,
    TargetTimeout,
    get_target,
    resolve_in_root,
)

# The first run debootstraps the roots inside a fixture: arm64 alone takes ~6 min under
# qemu on a loaded machine, beyond the default per-test timeout.
pytestmark = pytest.mark.timeout(1800)

# Debian's busybox-static: the only way to look around an empty root, which has no shell.
BUSYBOX = Path("/bin/busybox")
TARGETS = [*SUITES, EMPTY_TARGET]
TARGET_IDS = [f"{suite}-{arch}" for suite, arch in TARGETS]

# Host variables that must not reach the target; set during the probe to prove they don't.
LEAKY = {
    "SSL_CERT_FILE": "/host/ca.pem",
    "REQUESTS_CA_BUNDLE": "/host/ca.pem",
    "CONDA_PREFIX": "/x",
}
# What shells and Docker add on their own; anything else in the target came from the host.
ALLOWED_EXTRA_ENV = {"PWD", "SHLVL", "_", "HOSTNAME", "OLDPWD"}

PROBE = r"""
set -u
echo "root_entries=$(ls -A / | tr '\n' ' ')"
if [ -x /bin/busybox ] && [ ! -e /bin/sh ]; then /bin/busybox --install -s /bin; fi
echo "os=$(. /etc/os-release 2>/dev/null && echo "$ID:$VERSION_CODENAME")"
echo "uname_m=$(uname -m)"
echo "dpkg_arch=$(dpkg --print-architecture 2>/dev/null)"
echo "pythons=$(for p in python python2 python3; do command -v $p; done;
  ls -d /usr/bin/python* /usr/local/bin/python* /usr/lib/python3* 2>/dev/null | tr '\n' ' ')"
echo "interfaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
if command -v bash >/dev/null; then
  echo "tcp=$(timeout 10 bash -c 'exec 3<>/dev/tcp/192.0.2.1/80' 2>&1 && echo connected)"
fi
echo "env_names=$(env | cut -d= -f1 | sort | tr '\n' ' ')"
echo "path=$PATH"
echo "home=$HOME"
echo "mode_tool=$(stat -c %a /work/tool)"
echo "mode_data=$(stat -c %a /work/data)"
echo "mode_nested=$(stat -c %a /opt/tree/sub/run.sh)"
echo "tool_out=$(/work/tool)"
echo "nested_out=$(/opt/tree/sub/run.sh)"
echo "via_path=$(tool2)"
echo "sha_data=$(sha256sum /work/data | cut -d' ' -f1)"
echo "bin_link=$(readlink /bin)"
for d in /app /root /tmp; do
  mkdir -p "$d" && echo x > "$d/.probe" && echo "writable_$d=yes"
done
"""


@dataclass(frozen=True)
class Probe:
    facts: dict[str, str]
    result: RunResult
    data_sha256: str


def _parse(stdout: str) -> dict[str, str]:
    facts = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            facts[key] = value.strip()
    return facts


def _write(path: Path, text: str, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _run_anywhere(
    target: Target,
    script: str,
    files: Mapping[str, Path] | None = None,
    timeout: float = 600,
) -> RunResult:
    """Run a shell script on any target; the empty root borrows busybox's shell."""
    if target.suite == EMPTY:
        with_shell = {**(files or {}), "/bin/busybox": BUSYBOX}
        return target.run(["/bin/busybox", "sh", "-c", script], files=with_shell, timeout=timeout)
    return target.run(script, files=files or {}, timeout=timeout)


@pytest.fixture(scope="module")
def probes() -> dict[tuple[str, str, str], Probe]:
    """Probe results shared by the tests of one target and backend, computed once."""
    return {}


def _make_target(suite: str, arch: str, backend: str) -> Target:
    if suite == EMPTY and not BUSYBOX.is_file():
        pytest.skip(
            f"{BUSYBOX} missing: apt-get install busybox-static to look inside the empty root"
        )
    return get_target(suite, arch, backend=backend)


@pytest.fixture(params=TARGETS, ids=TARGET_IDS)
def target(request: pytest.FixtureRequest, backend: str) -> Target:
    """Every suite and arch, plus the empty root."""
    suite, arch = request.param
    return _make_target(suite, arch, backend)


# What a backend does regardless of the suite (exit codes, exec failures, isolation) is
# checked on one Debian root and the empty one, not on the whole matrix.
RUNTIME_TARGETS = [("bookworm", "amd64"), EMPTY_TARGET]


@pytest.fixture(params=RUNTIME_TARGETS, ids=[f"{s}-{a}" for s, a in RUNTIME_TARGETS])
def runtime_target(request: pytest.FixtureRequest, backend: str) -> Target:
    suite, arch = request.param
    return _make_target(suite, arch, backend)


@pytest.fixture
def probe(
    target: Target,
    probes: dict[tuple[str, str, str], Probe],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Probe:
    key = (target.backend, target.suite, target.arch)
    if key not in probes:
        host = tmp_path_factory.mktemp("probe")
        data = os.urandom(4096)
        (host / "data").write_bytes(data)
        (host / "data").chmod(0o640)
        files = {
            "/work/tool": _write(host / "tool", "#!/bin/sh\necho tool-ran\n", 0o755),
            "/work/data": host / "data",
            "/opt/tree": host / "tree",
            # /bin is a symlink in merged-/usr roots: the copy must go through it.
            "/bin/tool2": _write(host / "tool2", "#!/bin/sh\necho tool2-ran\n", 0o755),
        }
        _write(host / "tree" / "sub" / "run.sh", "#!/bin/sh\necho nested-ran\n", 0o750)
        for name, value in LEAKY.items():
            monkeypatch.setenv(name, value)
        result = _run_anywhere(target, PROBE, files=files, timeout=300)
        probes[key] = Probe(_parse(result.stdout), result, hashlib.sha256(data).hexdigest())
    return probes[key]


@pytest.mark.container
def test_probe_exits_cleanly(probe: Probe) -> None:
    assert probe.result.exit_code == 0, probe.result


@pytest.mark.container
def test_suite_and_arch(target: Target, probe: Probe) -> None:
    assert probe.facts["uname_m"] == rootfs.uname_machine(target.arch)
    if target.suite == EMPTY:
        assert probe.facts["os"] == ""
        assert probe.facts["dpkg_arch"] == ""
    else:
        assert probe.facts["os"] == f"debian:{target.suite}"
        assert probe.facts["dpkg_arch"] == target.arch


@pytest.mark.container
def test_empty_root_holds_only_the_runtime_and_our_files(target: Target, probe: Probe) -> None:
    if target.suite != EMPTY:
        assert "usr" in probe.facts["root_entries"].split()
        return
    entries = set(probe.facts["root_entries"].split())
    # Docker adds /sys, /etc (hosts, hostname, resolv.conf) and /.dockerenv to any container.
    runtime = {"dev", "proc", "tmp", "sys", "etc", ".dockerenv"}
    copied = {"bin", "work", "opt"}
    assert entries - runtime - copied == set()
    assert {"dev", "proc", "tmp"} <= entries


@pytest.mark.container
def test_no_python(probe: Probe) -> None:
    assert probe.facts["pythons"] == ""


@pytest.mark.container
def test_no_network(target: Target, probe: Probe) -> None:
    assert probe.facts["interfaces"].split() == ["lo"]
    if target.suite != EMPTY:
        assert "connected" not in probe.facts["tcp"]
        assert "unreachable" in probe.facts["tcp"].lower()


@pytest.mark.container
def test_clean_environment(probe: Probe) -> None:
    names = set(probe.facts["env_names"].split())
    assert names - ALLOWED_EXTRA_ENV == set(CLEAN_ENV)
    assert probe.facts["path"] == CLEAN_ENV["PATH"]
    assert probe.facts["home"] == CLEAN_ENV["HOME"]


@pytest.mark.container
def test_copied_files_keep_modes_and_run(target: Target, probe: Probe) -> None:
    facts = probe.facts
    assert (facts["mode_tool"], facts["mode_data"], facts["mode_nested"]) == ("755", "640", "750")
    assert facts["tool_out"] == "tool-ran"
    assert facts["nested_out"] == "nested-ran"
    assert facts["via_path"] == "tool2-ran"
    assert facts["sha_data"] == probe.data_sha256
    cached_bin = rootfs.ensure_rootfs(target.suite, target.arch) / "bin"
    if cached_bin.is_symlink():
        assert facts["bin_link"] == os.readlink(cached_bin)


@pytest.mark.container
def test_app_root_and_tmp_are_writable(probe: Probe) -> None:
    for directory in ("/app", "/root", "/tmp"):
        assert probe.facts.get(f"writable_{directory}") == "yes", probe.result.stderr


@pytest.mark.container
@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_code_and_streams_propagate(runtime_target: Target, code: int) -> None:
    result = _run_anywhere(runtime_target, f"echo to-out; echo to-err >&2; exit {code}")
    assert result == RunResult(code, "to-out\n", "to-err\n")


@pytest.mark.container
def test_argv_runs_without_a_shell(target: Target) -> None:
    if target.suite == EMPTY:
        result = target.run(["/bin/busybox", "echo", "a  b"], files={"/bin/busybox": BUSYBOX})
    else:
        result = target.run(["/bin/echo", "a  b"])
    # Two spaces survive only if no shell re-split the argument.
    assert result == RunResult(0, "a  b\n", "")


@pytest.mark.container
def test_missing_program_is_127(runtime_target: Target) -> None:
    result = runtime_target.run(["/no/such/program"])
    assert result.exit_code == EXIT_NOT_FOUND
    assert "no such file" in result.stderr.lower()


@pytest.mark.container
def test_each_run_starts_fresh(runtime_target: Target) -> None:
    target = runtime_target
    first = _run_anywhere(target, "mkdir -p /app && echo 1 > /app/left && echo 1 > /tmp/left")
    assert first.exit_code == 0, first
    second = _run_anywhere(target, "ls /app/left /tmp/left")
    assert second.exit_code != 0, "a file from the previous run is still there"
    cached = rootfs.ensure_rootfs(target.suite, target.arch)
    assert not (cached / "app").exists(), "a run wrote into the cached root"


@pytest.mark.container
def test_timeout_kills_the_command(backend: str) -> None:
    target = get_target("bookworm", "amd64", backend=backend)
    with pytest.raises(TargetTimeout) as raised:
        target.run("echo started; sleep 60", timeout=3)
    assert "started" in raised.value.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("suite", "arch"), SUITES, ids=[f"{s}-{a}" for s, a in SUITES])
def test_cached_rootfs_is_bare(suite: str, arch: str) -> None:
    root = rootfs.ensure_rootfs(suite, arch)
    rootfs.check_rootfs(root, suite)
    assert not list(root.glob("var/cache/apt/archives/*.deb"))


# Unit tests of the harness's own logic; no container needed.


@pytest.fixture
def fake_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "etc").mkdir()
    (root / "etc" / "alt").symlink_to("/usr/bin")
    (root / "loop").symlink_to("loop")
    yield root
    shutil.rmtree(root)


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        ("/bin/tool", "/usr/bin/tool"),
        ("/etc/alt/tool", "/usr/bin/tool"),
        ("/work/new/file", "/work/new/file"),
        ("/usr/bin/../../bin/x", "/usr/bin/x"),
        ("/bin", "/bin"),
    ],
)
def test_resolve_in_root_follows_the_roots_symlinks(
    fake_root: Path, dest: str, expected: str
) -> None:
    assert resolve_in_root(fake_root, dest) == PurePosixPath(expected)


@pytest.mark.parametrize("dest", ["relative/file", "/", "/loop/x"])
def test_resolve_in_root_refuses(fake_root: Path, dest: str) -> None:
    with pytest.raises(ValueError):
        resolve_in_root(fake_root, dest)


def test_check_rootfs_refuses_python_and_wrong_suite(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text("ID=debian\nVERSION_CODENAME=bookworm\n")
    rootfs.check_rootfs(tmp_path, "bookworm")
    with pytest.raises(RootfsError, match="trixie"):
        rootfs.check_rootfs(tmp_path, "trixie")
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "python3").touch()
    with pytest.raises(RootfsError, match="python"):
        rootfs.check_rootfs(tmp_path, "bookworm")

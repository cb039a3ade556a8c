"""The `envpack` command line, run as a user runs it: the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import rattler

import envpack

ENVPACK = Path(sys.executable).parent / "envpack"
LOCKS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "real-locks"
NEEDS_SHARED = pytest.mark.skipif(
    not LOCKS_DIR.is_dir(), reason=f"{LOCKS_DIR} is absent (it is not part of the repository)"
)
SIMPLE = LOCKS_DIR / "Quantco_pixi-pack_examples_simple-python_pixi.lock"
WEBSERVER = LOCKS_DIR / "Quantco_pixi-pack_examples_webserver_pixi.lock"


def _run(
    *args: str | Path, cwd: Path | None = None, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if home is not None:
        # No pixi config, auth file or cache of the developer's leaks into the test.
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
        env.update(XDG_CACHE_HOME=str(home / ".cache"))
        env.pop("RATTLER_AUTH_FILE", None)
    return subprocess.run(
        [str(ENVPACK), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def _assert_one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _expected(lock: Path, env: str, platform: str) -> tuple[int, int]:
    """Count and total size from rattler's records, not from envpack."""
    environment = rattler.LockFile.from_path(lock).environment(env)
    assert environment is not None
    (plat,) = [p for p in environment.platforms() if p.name == platform]
    conda = [
        p.repo_data_record()
        for p in environment.packages(plat) or []
        if isinstance(p, rattler.CondaLockedBinaryPackage)
    ]
    wheels = [
        p
        for p in environment.packages(plat) or []
        if isinstance(p, rattler.PypiLockedPackage) and p.location.split("#")[0].endswith(".whl")
    ]
    return len(conda) + len(wheels), sum(r.size or 0 for r in conda)


# --- informational --------------------------------------------------------------------------


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"envpack {envpack.__version__}"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag: str) -> None:
    result = _run(flag)
    assert result.returncode == 0, result.stderr
    for option in ("--environment", "--platform", "--output", "--compression", "--dry-run"):
        assert option in result.stdout
    assert result.stderr == ""


# --- dry runs on real locks -------------------------------------------------------------------


@NEEDS_SHARED
@pytest.mark.parametrize(
    ("lock", "env", "platform"),
    [
        (SIMPLE, "default", "linux-64"),
        (SIMPLE, "default", "linux-aarch64"),
        (WEBSERVER, "prod", "osx-arm64"),
    ],
)
def test_dry_run_json(tmp_path: Path, lock: Path, env: str, platform: str) -> None:
    result = _run(lock, "--dry-run", "--json", "-e", env, "-p", platform, home=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    count, total = _expected(lock, env, platform)
    assert len(doc["artifacts"]) == count
    assert doc["total_size"] == total == sum(a["size"] or 0 for a in doc["artifacts"])
    assert (doc["environment"], doc["platform"]) == (env, platform)
    assert not list(tmp_path.rglob("*.conda")), "a dry run downloads nothing"


@NEEDS_SHARED
def test_dry_run_accepts_a_project_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pixi.lock").write_bytes(SIMPLE.read_bytes())
    result = _run("--dry-run", "--json", "-p", "linux-64", cwd=project, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        len(json.loads(result.stdout)["artifacts"]) == _expected(SIMPLE, "default", "linux-64")[0]
    )


@NEEDS_SHARED
def test_dry_run_human_output(tmp_path: Path) -> None:
    result = _run(SIMPLE, "--dry-run", "-p", "linux-64", home=tmp_path)
    assert result.returncode == 0, result.stderr
    count, _ = _expected(SIMPLE, "default", "linux-64")
    assert result.stdout.splitlines()[-1].startswith(f"{count} artifacts")


# --- user errors: one line, no traceback ------------------------------------------------------


def test_missing_lock(tmp_path: Path) -> None:
    _assert_one_error_line(_run(tmp_path / "nope.lock", "--dry-run", home=tmp_path), "nope.lock")


def test_directory_without_a_lock(tmp_path: Path) -> None:
    _assert_one_error_line(_run(tmp_path, "--dry-run", home=tmp_path), "pixi.lock")


def test_invalid_lock(tmp_path: Path) -> None:
    lock = tmp_path / "pixi.lock"
    lock.write_text("version: 6\nenvironments: [this is\n  not: {valid\n")
    _assert_one_error_line(_run(lock, "--dry-run", home=tmp_path), "pixi.lock")


@NEEDS_SHARED
def test_unknown_environment(tmp_path: Path) -> None:
    line = _assert_one_error_line(
        _run(WEBSERVER, "--dry-run", "-e", "staging", home=tmp_path), "staging"
    )
    assert "default" in line and "prod" in line


@NEEDS_SHARED
def test_unknown_platform(tmp_path: Path) -> None:
    line = _assert_one_error_line(
        _run(SIMPLE, "--dry-run", "-p", "linux-s390x", home=tmp_path), "linux-s390x"
    )
    assert "linux-64" in line and "osx-arm64" in line


@NEEDS_SHARED
def test_sdist_without_the_flag(tmp_path: Path) -> None:
    lock = LOCKS_DIR / "Quantco_pixi-pack_examples_pypi-non-wheel-packages_pixi.lock"
    _assert_one_error_line(_run(lock, "--dry-run", "-p", "linux-64", home=tmp_path), "pysdl2")


@pytest.mark.parametrize("mirror", ["no-equals", "=https://m.example", "https://o.example="])
def test_bad_mirror(tmp_path: Path, mirror: str) -> None:
    _assert_one_error_line(
        _run(tmp_path, "--dry-run", "--mirror", mirror, home=tmp_path), "ORIGINAL=MIRROR"
    )


def test_unknown_option(tmp_path: Path) -> None:
    result = _run("--frobnicate", home=tmp_path)
    _assert_one_error_line(result, "--frobnicate")
    assert result.returncode == 2


@pytest.mark.parametrize(
    "args",
    [["--compression", "lz4"], ["--level", "99"], ["--concurrency", "0"]],
    ids=["compression", "level", "concurrency"],
)
def test_bad_option_values(tmp_path: Path, args: list[str]) -> None:
    _assert_one_error_line(_run(tmp_path, "--dry-run", *args, home=tmp_path))


# --- outputs that would destroy inputs, unusable caches, checks before any download ------------


@pytest.fixture
def dead_project(tmp_path: Path, fixture_channel: object) -> Path:
    """A project whose lock points at a closed port: any download attempt fails loudly."""
    from devtools.fixtures.channel import FixtureChannel, lock_for

    assert isinstance(fixture_channel, FixtureChannel)
    return lock_for(fixture_channel.lock_v6, "http://127.0.0.1:9", tmp_path / "dead").parent


@pytest.mark.parametrize(
    "spelling", ["pixi.lock", "./pixi.lock", "../dead/pixi.lock", "ABS", "LINK"]
)
@pytest.mark.parametrize("force", [False, True])
def test_output_naming_the_lock_is_refused(dead_project: Path, spelling: str, force: bool) -> None:
    lock = dead_project / "pixi.lock"
    before = lock.read_bytes()
    if spelling == "ABS":
        spelling = str(lock)
    elif spelling == "LINK":
        (dead_project / "link.tar").symlink_to(lock)
        spelling = "link.tar"
    args = ["-o", spelling, *(["--force"] if force else [])]
    result = _run(*args, cwd=dead_project, home=dead_project)
    _assert_one_error_line(result, "is the lock")
    assert lock.read_bytes() == before
    assert [p.name for p in dead_project.iterdir() if p.name.endswith(".part")] == []


def test_output_naming_an_injected_file_or_the_unpacker_is_refused(
    dead_project: Path, tmp_path: Path
) -> None:
    from tests.stubunpacker import build_stub_unpacker

    wheel = tmp_path / "six-1.16.0-py2.py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    result = _run(dead_project, "--inject", wheel, "-o", wheel, "--force", home=tmp_path)
    # The wheel is refused as unreadable first, or the output as the input: never overwritten.
    assert result.returncode != 0
    assert wheel.read_bytes() == b"not really a wheel"
    unpacker = build_stub_unpacker(tmp_path / "u")
    before = unpacker.read_bytes()
    result = _run(
        dead_project,
        "--create-executable",
        "--unpacker",
        unpacker,
        "-o",
        unpacker,
        "--force",
        home=tmp_path,
    )
    _assert_one_error_line(result, "is the --unpacker")
    assert unpacker.read_bytes() == before


def test_existing_output_needs_force(fixture_project: Path, tmp_path: Path) -> None:
    out = tmp_path / "env.tar"
    out.write_bytes(b"precious")
    result = _run(fixture_project, "-o", out, "--cache", tmp_path / "c", home=tmp_path)
    _assert_one_error_line(result, "already exists", "--force")
    assert out.read_bytes() == b"precious"
    result = _run(fixture_project, "-o", out, "--cache", tmp_path / "c", "--force", "-q")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"


@pytest.mark.parametrize("output", ["/proc/envpack-test.tar", "/sys/envpack-test.tar"])
def test_unwritable_output_is_found_before_downloading(
    dead_project: Path, tmp_path: Path, output: str
) -> None:
    result = _run(dead_project, "-o", output, "--cache", tmp_path / "c", home=tmp_path)
    line = _assert_one_error_line(result, output)
    assert "127.0.0.1:9" not in line  # no download was tried


def test_home_that_does_not_exist_names_the_cache_option(
    dead_project: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "HOME": "/nonexistent"}
    env.pop("XDG_CACHE_HOME", None)
    result = subprocess.run(
        [str(ENVPACK), dead_project, "-o", tmp_path / "e.tar"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    _assert_one_error_line(result, "/nonexistent", "--cache")
    assert not Path("/nonexistent").exists()
    assert list(tmp_path.glob("*.tar*")) == []


def test_cache_that_is_a_file_is_one_error(dead_project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.write_text("a file")
    result = _run(dead_project, "-o", tmp_path / "e.tar", "--cache", cache, home=tmp_path)
    _assert_one_error_line(result, str(cache), "--cache")
    assert cache.read_text() == "a file"


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to user nobody, which needs root")
def test_read_only_home_of_a_system_user(dead_project: Path) -> None:
    """As user nobody with a HOME it cannot write: one line naming the cache, not exit 70."""
    # Outside pytest's own tmp tree, which only root may enter.
    shared = Path(tempfile.mkdtemp(prefix="envpack-nobody-"))
    try:
        _as_nobody_with_read_only_home(dead_project, shared)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _as_nobody_with_read_only_home(dead_project: Path, shared: Path) -> None:
    shared.chmod(0o755)
    home = shared / "home"
    home.mkdir(mode=0o555)
    project = shared / "project"
    project.mkdir()
    (project / "pixi.lock").write_bytes((dead_project / "pixi.lock").read_bytes())
    (project / "pixi.lock").chmod(0o644)
    out_dir = shared / "out"
    out_dir.mkdir(mode=0o777)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            str(ENVPACK),
            project,
            "-o",
            out_dir / "e.tar",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    _assert_one_error_line(result, str(home / ".cache"), "--cache")
    assert list(out_dir.iterdir()) == []


# --- --create-executable: its default name and a checked unpacker ------------------------------


def test_create_executable_defaults_to_environment_sh(
    fixture_project: Path, tmp_path: Path
) -> None:
    from tests.stubunpacker import build_stub_unpacker

    unpacker = build_stub_unpacker(tmp_path / "u")
    work = tmp_path / "work"
    work.mkdir()
    result = _run(
        fixture_project,
        "--create-executable",
        "--unpacker",
        unpacker,
        "--cache",
        tmp_path / "c",
        "-q",
        cwd=work,
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in work.iterdir()] == ["environment.sh"]
    assert (work / "environment.sh").read_bytes()[:4] == b"\x7fELF"
    assert (work / "environment.sh").stat().st_mode & 0o111


def test_unpacker_that_is_not_ours_is_refused(dead_project: Path, tmp_path: Path) -> None:
    from tests.stubunpacker import build_stub_unpacker

    def attempt(unpacker: Path, *args: str) -> str:
        result = _run(
            dead_project,
            "--create-executable",
            "--unpacker",
            unpacker,
            "-o",
            tmp_path / "e.sh",
            *args,
            home=tmp_path,
        )
        assert not (tmp_path / "e.sh").exists()
        return _assert_one_error_line(result, str(unpacker))

    assert "not an executable (ELF)" in attempt(Path("/etc/passwd"))
    plain = build_stub_unpacker(tmp_path / "plain", marked=False)
    assert "not a static envunpack" in attempt(plain)
    arm = build_stub_unpacker(tmp_path / "arm", "aarch64")
    assert "built for aarch64" in attempt(arm)
    assert "no such file" in attempt(tmp_path / "missing")


def test_missing_unpacker_speaks_to_pip_users(dead_project: Path, tmp_path: Path) -> None:
    env = {**os.environ, "ENVPACK_UNPACKER_DIR": str(tmp_path)}
    result = subprocess.run(
        [str(ENVPACK), dead_project, "--create-executable", "-o", tmp_path / "e.sh"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    _assert_one_error_line(result, "--unpacker PATH", "ENVPACK_UNPACKER_DIR", "releases")


# --- help, completion and exit codes ----------------------------------------------------------


def test_help_fits_80_columns_and_names_every_flag_whole() -> None:
    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run(
        [str(ENVPACK), "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0
    text = result.stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    for flag in ("--ignore-pypi-non-wheel", "--create-executable", "--force", "--dry-run"):
        assert f"  {flag}" in text, flag
    assert "…" not in text and "─" not in text  # no cut names, no rich boxes
    from envpack.packer.cachedir import DEFAULT_HELP

    assert " ".join(DEFAULT_HELP.split()) in " ".join(text.split())
    assert "pixi.lock, the pixi.toml or pyproject.toml beside it" in " ".join(text.split())
    assert "--no-" not in text


def test_bash_completes_options_through_the_printed_script() -> None:
    """A real bash sources `--completion bash` and asks it, as TAB after `envpack --fo` does."""
    script = (
        f'eval "$({ENVPACK} --completion bash)"; COMP_WORDS=({ENVPACK} --fo); COMP_CWORD=1; '
        f'_envpack_completion {ENVPACK}; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "--force" in result.stdout.split(), result.stdout


@pytest.mark.parametrize(
    ("shell", "needle", "asks"),
    [
        ("zsh", "#compdef envpack", {}),
        ("fish", "complete --command envpack", {"_TYPER_COMPLETE_FISH_ACTION": "get-args"}),
    ],
)
def test_zsh_and_fish_completion(shell: str, needle: str, asks: dict[str, str]) -> None:
    script = subprocess.run(
        [str(ENVPACK), "--completion", shell], capture_output=True, text=True, check=False
    )
    assert script.returncode == 0, script.stderr
    assert needle in script.stdout
    # What the printed script sets before it runs envpack to ask for candidates.
    env = {
        **os.environ,
        "_ENVPACK_COMPLETE": f"complete_{shell}",
        "_TYPER_COMPLETE_ARGS": "envpack --fo",
        **asks,
    }
    answer = subprocess.run([str(ENVPACK)], capture_output=True, text=True, env=env, check=False)
    assert "--force" in answer.stdout, (answer.stdout, answer.stderr)


def test_completion_of_an_unknown_shell_is_a_usage_error() -> None:
    result = subprocess.run(
        [str(ENVPACK), "--completion", "tcsh"], capture_output=True, text=True, check=False
    )
    _assert_one_error_line(result, "bash, zsh, fish")
    assert result.returncode == 2


def test_usage_errors_exit_2(dead_project: Path, tmp_path: Path) -> None:
    for args in (["--no-such-flag"], ["--level", "99"], ["--unpacker", "/bin/ls"]):
        result = _run(dead_project, *args, home=tmp_path)
        _assert_one_error_line(result)
        assert result.returncode == 2, (args, result.stderr)


def test_bad_inject_says_its_cause_once(dead_project: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad-1.0-0.conda"
    bad.write_text("garbage")
    line = _assert_one_error_line(_run(dead_project, "--inject", bad, "--dry-run", home=tmp_path))
    clauses = [c.lower() for c in line.removeprefix("error: ").split(": ")]
    assert len(clauses) == len(set(clauses)), line


def test_json_of_plan_and_pack_share_one_schema(fixture_project: Path, tmp_path: Path) -> None:
    plan = json.loads(_run(fixture_project, "--dry-run", "--json", home=tmp_path).stdout)
    packed = _run(
        fixture_project,
        "--json",
        "-o",
        tmp_path / "e.tar",
        "--cache",
        tmp_path / "c",
        home=tmp_path,
    )
    assert packed.returncode == 0, packed.stderr
    result = json.loads(packed.stdout)
    for doc, command in ((plan, "plan"), (result, "pack")):
        assert doc["command"] == command
        assert isinstance(doc["artifacts"], list)
        assert {"platform", "environment", "total_size"} <= doc.keys()
    assert [a["path"] for a in plan["artifacts"]] == [a["path"] for a in result["artifacts"]]
    assert result["total_size"] == sum(a["size"] for a in result["artifacts"])


@pytest.mark.parametrize("manifest", ["pixi.toml", "pyproject.toml", "."])
def test_manifest_means_the_lock_beside_it(
    tmp_path: Path, fixture_project: Path, manifest: str
) -> None:
    if manifest != ".":
        (fixture_project / manifest).write_text("[workspace]\nname = 'fixture'\n")
    by_lock = _run(fixture_project / "pixi.lock", "--dry-run", "--json", home=tmp_path)
    by_manifest = _run(fixture_project / manifest, "--dry-run", "--json", home=tmp_path)
    assert by_lock.returncode == 0, by_lock.stderr
    assert by_manifest.returncode == 0, by_manifest.stderr
    assert json.loads(by_manifest.stdout) == json.loads(by_lock.stdout)


def test_manifest_without_a_lock(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    line = _assert_one_error_line(_run(tmp_path / "pyproject.toml", "--dry-run", home=tmp_path))
    assert line == f"error: no pixi.lock next to {tmp_path / 'pyproject.toml'}; run `pixi lock`"


@pytest.mark.parametrize(
    "spelling", [["completion", "-s", "bash"], ["completion", "--shell", "bash"]]
)
def test_pixi_packs_completion_subcommand(spelling: list[str]) -> None:
    ours = subprocess.run([str(ENVPACK), "--completion", "bash"], capture_output=True, text=True)
    theirs = subprocess.run([str(ENVPACK), *spelling], capture_output=True, text=True)
    assert theirs.returncode == 0, theirs.stderr
    assert theirs.stdout == ours.stdout and "complete -o" in ours.stdout
    unpack = subprocess.run(
        [str(ENVPACK.parent / "envunpack"), *spelling], capture_output=True, text=True
    )
    assert unpack.returncode == 0 and "_envunpack_completion" in unpack.stdout

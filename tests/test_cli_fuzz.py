"""Both command lines under generated nonsense: never an internal error, never a traceback.

hypothesis draws argument lists from each CLI's flags with good, bad and absurd values,
paths of every kind (missing, a file, a dir, /proc, /dev/null, a real archive, a lock whose
server is down) and environments (HOME missing, read-only, XDG_CACHE_HOME a file). Each
draw runs the real CLI entry point in this process; exit 70 is the only failure.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from envpack.core.cliutil import EXIT_INTERNAL, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, archives: dict[str, Path]) -> dict[str, str]:
    from devtools.fixtures.channel import build, lock_for

    base = tmp_path_factory.mktemp("fuzz")
    dead = lock_for(build().lock_v6, "http://127.0.0.1:9", base / "dead")
    (base / "file.txt").write_text("hello\n")
    (base / "dir").mkdir()
    (base / "ro").mkdir(mode=0o555)
    (base / "garbage.tar").write_bytes(b"\x00" * 700 + b"junk")
    (base / "xdg-file").write_text("not a dir")
    cut = base / "cut.tar"
    cut.write_bytes(archives["zstd"].read_bytes()[:40000])
    return {
        "LOCK": str(dead),
        "PROJECT": str(dead.parent),
        "ARCHIVE": str(archives["zstd"]),
        "CUT": str(cut),
        "FILE": str(base / "file.txt"),
        "DIR": str(base / "dir"),
        "RO": str(base / "ro"),
        "GARBAGE": str(base / "garbage.tar"),
        "NEW": str(base / "out" / "new"),
        "XDG_FILE": str(base / "xdg-file"),
        "BASE": str(base),
    }


PATHS = st.sampled_from(
    ["LOCK", "PROJECT", "ARCHIVE", "CUT", "FILE", "DIR", "RO", "GARBAGE", "NEW", "BASE"]
) | st.sampled_from(["/proc/x", "/sys/x", "/dev/null", "/nonexistent/x", "", ".", "..", "\x7f"])
WORDS = st.sampled_from(["-1", "0", "99999", "abc", "linux-64", "win-64", "a=b", "=", "zstd"])
VALUES = PATHS | WORDS | st.text(max_size=12)

PACK_FLAGS = {
    "-e": VALUES,
    "-p": VALUES,
    "-o": PATHS,
    "--compression": VALUES,
    "--level": VALUES,
    "--cache": PATHS,
    "--concurrency": VALUES,
    "--mirror": VALUES,
    "--auth-file": PATHS,
    "--inject": PATHS,
    "--timeout": VALUES,
    "--unpacker": PATHS,
    "--completion": VALUES,
}
PACK_SWITCHES = [
    "--force",
    "--dry-run",
    "--json",
    "-q",
    "-v",
    "--create-executable",
    "--ignore-pypi-non-wheel",
    "--nope",
]
UNPACK_FLAGS = {"-o": PATHS, "-e": VALUES, "--shell": VALUES, "--completion": VALUES}
UNPACK_SWITCHES = ["--force", "--list", "--check", "--json", "-q", "--compile", "--nope"]


def _argv(
    flags: dict[str, st.SearchStrategy[str]], switches: list[str]
) -> st.SearchStrategy[list[str]]:
    option = st.sampled_from(sorted(flags)).flatmap(
        lambda f: st.tuples(st.just(f), flags[f]).map(list)
    )
    switch = st.sampled_from(switches).map(lambda s: [s])
    return st.lists(option | switch, max_size=5).map(lambda parts: [w for p in parts for w in p])


ENVS = st.fixed_dictionaries(
    {},
    optional={
        "HOME": st.sampled_from(["/nonexistent", "RO", "DIR", "FILE"]),
        "XDG_CACHE_HOME": st.sampled_from(["XDG_FILE", "RO", "/proc"]),
        "RATTLER_AUTH_FILE": PATHS,
    },
)


@contextlib.contextmanager
def _environment(changes: dict[str, str], world: dict[str, str]) -> Iterator[None]:
    saved, cwd = dict(os.environ), Path.cwd()
    os.environ.update({k: world.get(v, v) for k, v in changes.items()})
    os.chdir(world["BASE"])  # default outputs (environment.tar) land in the sandbox
    try:
        yield
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)


def _resolve(argv: list[str], world: dict[str, str]) -> list[str]:
    return [world.get(a, a) for a in argv]


def _judge(code: int, err: str, args: list[str], env: dict[str, str]) -> None:
    event(f"exit {code}")
    assert code != EXIT_INTERNAL, (args, env, err)
    assert "Traceback" not in err, (args, err)
    if code != 0:
        assert err.strip().splitlines()[-1].startswith("error: "), (args, err)


FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(
    lead=st.sampled_from(["LOCK", "PROJECT", "FILE", "DIR", "NEW", "GARBAGE"]),
    argv=_argv(PACK_FLAGS, PACK_SWITCHES),
    env=ENVS,
)
def test_envpack_never_fails_internally(
    world: dict[str, str],
    lead: str,
    argv: list[str],
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from envpack.packer.cli import app

    # One attempt per download: the lock's server is down, and backing off would only wait.
    args = [world[lead], *_resolve(argv, world), "--retries", "1"]
    with _environment(env, world):
        code = run(app, args, prog="envpack")
    _judge(code, capsys.readouterr().err, args, env)


@FUZZ
@given(
    lead=st.sampled_from(["ARCHIVE", "CUT", "GARBAGE", "FILE", "DIR", "LOCK", "NEW"]),
    argv=_argv(UNPACK_FLAGS, UNPACK_SWITCHES),
    env=ENVS,
)
def test_envunpack_never_fails_internally(
    world: dict[str, str],
    lead: str,
    argv: list[str],
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from envpack.target.unpack_cli import app

    args = [world[lead], *_resolve(argv, world)]
    if "-o" not in args:
        args += ["-o", world["NEW"]]
    with _environment(env, world):
        code = run(app, args, prog="envunpack")
    _judge(code, capsys.readouterr().err, args, env)

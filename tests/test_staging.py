"""staging: the locked working directory, abandoned-staging cleanup, and careful removal."""

from __future__ import annotations

import fcntl
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from envpack.core.errors import OutputError
from envpack.core.interrupt import Interrupted, on_signal
from envpack.core.progress import SilentReporter, TqdmReporter
from envpack.target.staging import (
    STAGING_PREFIX,
    clean_abandoned,
    ensure_dir,
    non_empty,
    remove_created,
    rmtree_settled,
    staging_dir,
)


def _is_locked(path: Path) -> bool:
    with (path / ".lock").open("a") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False


def test_staging_dir_is_beside_the_env_locked_and_removed(tmp_path: Path) -> None:
    with staging_dir(tmp_path, "env") as staging:
        assert staging.parent == tmp_path
        assert staging.name.startswith(f"{STAGING_PREFIX}env-")
        assert _is_locked(staging)
        (staging / "prefix" / "bin").mkdir(parents=True)
        (staging / "prefix" / "bin" / "tool").write_text("x")
    assert not staging.exists()
    assert list(tmp_path.iterdir()) == []


def test_staging_dir_is_removed_after_a_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), staging_dir(tmp_path, "env") as staging:
        (staging / "partial").write_text("x")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_a_signal_during_removal_waits_until_it_is_done(tmp_path: Path) -> None:
    saved = signal.signal(signal.SIGTERM, on_signal)
    try:
        with pytest.raises(Interrupted), staging_dir(tmp_path, "env") as staging:
            (staging / "file").write_text("x")
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, saved)
    assert list(tmp_path.iterdir()) == []


def test_clean_abandoned_skips_live_staging_and_removes_dead_ones(tmp_path: Path) -> None:
    dead = tmp_path / f"{STAGING_PREFIX}env-dead"
    (dead / "prefix").mkdir(parents=True)
    (dead / ".lock").write_text("")
    unlocked = tmp_path / f"{STAGING_PREFIX}env-nolock"
    unlocked.mkdir()
    other = tmp_path / "env"
    other.mkdir()
    # A live staging dir of another process: its lock is held there, not here.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.path[:0] = sys.argv[2:3]\n"
            "from pathlib import Path\n"
            "from envpack.target.staging import staging_dir\n"
            "with staging_dir(Path(sys.argv[1]), 'live') as s:\n"
            "    print(s, flush=True); sys.stdin.read()\n",
            str(tmp_path),
            str(Path(__file__).resolve().parent.parent / "src"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        live = Path(holder.stdout.readline().strip())
        assert live.is_dir()
        stream = io.StringIO()
        clean_abandoned(tmp_path, TqdmReporter(stream=stream))
        assert live.is_dir()
        assert not dead.exists()
        assert not unlocked.exists()
        assert other.is_dir()
        assert sorted(stream.getvalue().splitlines()) == sorted(
            f"removing leftovers of an interrupted run: {p.name}" for p in (dead, unlocked)
        )
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not live.exists()


def test_ensure_dir_reports_what_it_created_and_undoes_only_empty_dirs(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    created = ensure_dir(deep)
    assert created == [deep, deep.parent, deep.parent.parent]
    assert ensure_dir(deep) == []
    (tmp_path / "a" / "keep").write_text("user data")
    remove_created(created)
    assert not (tmp_path / "a" / "b").exists()
    assert (tmp_path / "a" / "keep").read_text() == "user data"


def test_ensure_dir_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        ensure_dir(tmp_path / "file")
    with pytest.raises(OutputError, match=r"^failed creating"):
        ensure_dir(tmp_path / "file" / "below")


def test_rmtree_settled_removes_links_not_what_they_point_at(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    tree = tmp_path / "tree"
    for i in range(50):
        (tree / f"d{i}").mkdir(parents=True)
        (tree / f"d{i}" / "f").write_text(str(i))
    (tree / "dirlink").symlink_to(outside)
    (tree / "filelink").symlink_to(outside / "precious")
    rmtree_settled(tree)
    assert not tree.exists()
    assert (outside / "precious").read_text() == "x"
    rmtree_settled(tree)  # already gone: nothing to do


def test_non_empty(tmp_path: Path) -> None:
    assert not non_empty(tmp_path / "missing")
    assert not non_empty(tmp_path)
    (tmp_path / "d").mkdir()
    assert non_empty(tmp_path)
    (tmp_path / "f").write_text("")
    assert non_empty(tmp_path / "f")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    assert non_empty(tmp_path / "dangling")


def test_clean_abandoned_in_an_empty_dir_says_nothing(tmp_path: Path) -> None:
    stream = io.StringIO()
    clean_abandoned(tmp_path, SilentReporter(stream))
    assert stream.getvalue() == ""

"""Extracting real packages as they stream in: piped or staged, the same tree as rattler's."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest
from rattler.package_streaming import extract

from devtools.fixtures.channel import FixtureChannel
from envpack.core.errors import ArchiveError, InstallError
from envpack.target import extractchild
from envpack.target.extract import Extractor, place
from envpack.target.pkgcheck import extracted_entries


def _packages(channel: FixtureChannel) -> list[Path]:
    # Both formats, and the biggest one (python), which spans many pipe buffers.
    files = sorted((channel.root / "linux-64").glob("*.conda"))
    files += sorted((channel.root / "linux-64").glob("*.tar.bz2"))
    assert any(p.name.startswith("python-3") for p in files)
    assert any(p.name.endswith(".tar.bz2") for p in files)
    return files


def _tree(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = os.readlink(path)
        elif path.is_file():
            out[rel] = path.read_bytes() + oct(path.stat().st_mode).encode()
    return out


def _feed_all(ex: Extractor, files: list[Path]) -> dict[str, str]:
    digests = {}
    for path in files:
        name = f"channel/linux-64/{path.name}"
        with path.open("rb") as fh:
            digests[name] = ex.feed(name, path.stat().st_size, fh, lambda c: None)
    return digests


# (in RAM, budget, inline): piped (nothing fits), staged in a memfd or on disk for a child,
# staged and extracted by the reader itself (packages up to 1 MiB, by default).
MODES = [(True, 0, 0), (True, 1 << 40, 0), (False, 1 << 40, 0), (True, 1 << 40, 1 << 40)]
MODE_IDS = ["piped", "memory", "disk", "inline"]
Mode = tuple[bool, int, int]


def _extractor(root: Path, mode: Mode, **kwargs: int) -> Extractor:
    in_memory, budget, inline = mode
    return Extractor(
        root, budget, memory_budget=budget, in_memory=in_memory, inline=inline, **kwargs
    )


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_same_tree_and_digest_as_rattlers_extract(
    fixture_channel: FixtureChannel, tmp_path: Path, mode: Mode
) -> None:
    files = _packages(fixture_channel)
    with _extractor(tmp_path / "x", mode) as ex:
        digests = _feed_all(ex, files)
        dirs = ex.finish()
    for path in files:
        name = f"channel/linux-64/{path.name}"
        assert digests[name] == hashlib.sha256(path.read_bytes()).hexdigest()
        direct = tmp_path / "direct" / path.name
        extract(path, direct)
        assert _tree(dirs[name]) == _tree(direct), path.name
        # Nothing of the archive is left beside the extracted package: not staged, not piped;
        # only its file list, which is the one read from the package itself.
        assert sorted(p.name for p in dirs[name].parent.iterdir()) == ["entries.json", "pkg"]
        (dirs[name].parent / "pkg").rename(tmp_path / "moved")
        assert ex.entries(name, tmp_path / "moved") == extracted_entries(direct, name)
        (tmp_path / "moved").rename(dirs[name].parent / "pkg")


def test_nothing_is_staged_past_the_budget(fixture_channel: FixtureChannel, tmp_path: Path) -> None:
    python = next(p for p in _packages(fixture_channel) if p.name.startswith("python-3"))
    budget = python.stat().st_size - 1
    ex = Extractor(tmp_path / "x", budget, memory_budget=budget)
    with python.open("rb") as fh, ex:
        seen: list[bool] = []

        def each(chunk: bytes) -> None:
            # While python streams in, its name under the work dir is a pipe, not a file.
            seen.append((tmp_path / "x" / "0" / python.name).is_symlink())

        ex.feed(f"channel/linux-64/{python.name}", python.stat().st_size, fh, each)
        ex.finish()
    assert seen and all(seen)


def test_a_corrupt_package_is_named(fixture_channel: FixtureChannel, tmp_path: Path) -> None:
    good = _packages(fixture_channel)[0]
    data = bytearray(good.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 4096] = bytes(4096)  # zeroed inside the payload
    for number, mode in enumerate(MODES):
        with _extractor(tmp_path / f"x{number}", mode) as ex:
            ex.feed("channel/linux-64/broken.conda", len(data), io.BytesIO(bytes(data)), len)
            with pytest.raises(InstallError, match=r"could not extract channel/linux-64/broken"):
                ex.finish()


def test_leaving_by_an_exception_reaps_every_child(
    fixture_channel: FixtureChannel, tmp_path: Path
) -> None:
    files = _packages(fixture_channel)
    with (
        pytest.raises(RuntimeError),
        _extractor(tmp_path / "x", (True, 1 << 40, 0), workers=4) as ex,
    ):
        _feed_all(ex, files[:4])
        raise RuntimeError("the reader failed")
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child of ours is left, running or unreaped


def test_place_names_each_package_for_rattlers_cache(tmp_path: Path) -> None:
    (tmp_path / "a" / "pkg").mkdir(parents=True)
    (tmp_path / "b" / "pkg").mkdir(parents=True)
    dirs = {"channel/noarch/x.conda": tmp_path / "a" / "pkg"}
    place(dirs, {"channel/noarch/x.conda": "x-1-0"}, tmp_path / "cache")
    assert (tmp_path / "cache" / "x-1-0").is_dir()
    dirs = {"channel/linux-64/x.conda": tmp_path / "b" / "pkg"}
    with pytest.raises(ArchiveError, match="a second package for x-1-0"):
        place(dirs, {"channel/linux-64/x.conda": "x-1-0"}, tmp_path / "cache")


_PARENT = """
import sys, time
from pathlib import Path
from envpack.target.extract import Extractor
package, root, in_memory = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
ex = Extractor(root, 1 << 40, memory_budget=1 << 40, in_memory=in_memory, workers=2)
for copy in ("a", "b"):  # the younger child holds the older one's pipe too
    with package.open("rb") as fh:
        ex.feed(f"channel/{copy}/{package.name}", package.stat().st_size, fh, len)
print("spawned", flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its reaper (not us) can collect it


@pytest.mark.parametrize("in_memory", [True, False], ids=["memory", "disk"])
def test_a_child_dies_with_its_sigkilled_parent(
    fixture_channel: FixtureChannel, tmp_path: Path, in_memory: bool
) -> None:
    # A staged child has its whole archive and no pipe to see end: only the parent's death
    # can stop it. The same code runs in the static build, which has no ctypes (no prctl).
    python = next(p for p in _packages(fixture_channel) if p.name.startswith("python-3"))
    root = tmp_path / "x"
    args = [sys.executable, "-c", _PARENT, str(python), str(root), "1" if in_memory else "0"]
    parent = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    children: list[int] = []
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "spawned\n"
        task = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
        children = [int(pid) for pid in task.read_text().split()]
        assert len(children) == 2
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while any(map(_alive, children)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(map(_alive, children))
    finally:
        parent.kill()
        parent.wait()
        for pid in children:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # Ended by the kill, not by finishing its package: the extraction stopped part way.
    extract(python, tmp_path / "direct")
    whole = sum(1 for _ in (tmp_path / "direct").rglob("*"))
    for work in ("0", "1"):
        assert sum(1 for _ in (root / work / "pkg").rglob("*")) < whole


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_a_full_disk_while_listing_files_is_said_as_a_full_disk(
    fixture_channel: FixtureChannel,
    tmp_path: Path,
    mode: Mode,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The file list is a Python write, which spells ENOSPC unlike rattler's io errors.
    def full(dest: Path, member: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest.parent / "entries.json"))

    monkeypatch.setattr(extractchild, "write_entries", full)
    files = _packages(fixture_channel)[:3]
    with pytest.raises(OSError) as raised, _extractor(tmp_path / "x", mode) as ex:
        _feed_all(ex, files)
        ex.finish()
    assert raised.value.errno == errno.ENOSPC

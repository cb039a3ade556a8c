"""envpack.packer.sbommemo: a remembered SBOM is the document a fresh build gives, keyed on
its inputs and the code that renders it; a damaged memo is never shipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import envpack.packer.sbom
from devtools.fixtures.channel import FixtureChannel, lock_for
from devtools.httpserver import serve_directory
from envpack.core.models import Artifact
from envpack.packer import sbommemo
from envpack.packer.sbom import sbom_json
from envpack.packer.sbomitems import Item, Subject
from envpack.packer.sbommemo import MEMO_DIR, sbom_for
from tests.clirun import run_cli

SUBJECT = Subject("default", "linux-64", "e" * 64)


def _items(license_: str = "BSD-3-Clause") -> list[Item]:
    numpy = Artifact(
        "conda", "numpy", "2.2.6", "numpy-2.2.6-0.conda", "a" * 64, None, 10, "0", "linux-64"
    )
    return [
        Item(
            numpy,
            {"license": license_, "depends": []},
            "https://c.example/x/linux-64/numpy-2.2.6-0.conda",
        )
    ]


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    builds: list[int] = []
    real = envpack.packer.sbom.sbom_json

    def counting(*args: object, **kwargs: object) -> bytes:
        builds.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(envpack.packer.sbom, "sbom_json", counting)
    return builds


def _memo_files(memo: Path) -> list[Path]:
    return sorted((memo / MEMO_DIR).glob("*.cdx.json"))


def test_a_remembered_document_is_a_fresh_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = _count_builds(monkeypatch)
    first = sbom_for(_items(), SUBJECT, tmp_path)
    again = sbom_for(_items(), SUBJECT, tmp_path)
    assert first == again == sbom_json(_items(), SUBJECT)
    assert len(builds) == 1  # the second was remembered
    assert len(_memo_files(tmp_path)) == 1


def test_without_a_memo_dir_every_call_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    builds = _count_builds(monkeypatch)
    assert sbom_for(_items(), SUBJECT, None) == sbom_for(_items(), SUBJECT, None)
    assert len(builds) == 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_a_damaged_memo_is_built_again_and_repaired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    good = sbom_for(_items(), SUBJECT, tmp_path)
    (memo,) = _memo_files(tmp_path)
    data = memo.read_bytes()
    broken = {
        "flip": data[:-10] + bytes([data[-10] ^ 1]) + data[-9:],
        "truncate": data[: len(data) // 2],
        "empty": b"",
    }[damage]
    memo.write_bytes(broken)
    builds = _count_builds(monkeypatch)
    assert sbom_for(_items(), SUBJECT, tmp_path) == good
    assert len(builds) == 1
    assert memo.read_bytes() == data


def test_other_inputs_or_other_code_are_other_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mit = sbom_for(_items("MIT"), SUBJECT, tmp_path)
    bsd = sbom_for(_items(), SUBJECT, tmp_path)
    assert mit != bsd and b'"MIT"' in mit
    other = sbom_for(_items(), Subject("prod", "linux-64", "e" * 64), tmp_path)
    assert other != bsd
    assert len(_memo_files(tmp_path)) == 3
    # An upgraded library (or an edited sbom.py) stamps differently: built again.
    real = sbommemo._stamp
    monkeypatch.setattr(sbommemo, "_stamp", lambda name: [*real(name), "upgraded"])
    builds = _count_builds(monkeypatch)
    assert sbom_for(_items(), SUBJECT, tmp_path) == bsd
    assert len(builds) == 1
    assert len(_memo_files(tmp_path)) == 4


def test_sbom_for_waits_for_the_document_warm_up_is_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = _count_builds(monkeypatch)
    sbommemo.warm_up(_items(), SUBJECT, tmp_path)
    assert sbom_for(_items(), SUBJECT, tmp_path) == sbom_json(_items(), SUBJECT)
    assert len(builds) == 1  # on the thread; sbom_for waited for it and read the memo
    sbommemo.warm_up(_items(), SUBJECT, tmp_path)  # remembered now: no thread
    assert sbommemo._BUILDING == {}


def test_a_cache_that_takes_no_writes_still_gives_the_document(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert sbom_for(_items(), SUBJECT, blocked) == sbom_json(_items(), SUBJECT)
    assert blocked.read_text() == "not a directory"


def test_warm_up_builds_on_a_thread_only_when_nothing_is_remembered(tmp_path: Path) -> None:
    code = """
import sys, threading
from pathlib import Path
from envpack.core.models import Artifact
from envpack.packer.sbomitems import Item, Subject
from envpack.packer.sbommemo import sbom_for, warm_up
memo = Path(sys.argv[1])
numpy = Artifact(
    "conda", "numpy", "2.2.6", "numpy-2.2.6-0.conda", "a" * 64, None, 10, "0", "linux-64"
)
url = "https://c.example/x/linux-64/numpy-2.2.6-0.conda"
items = [Item(numpy, {"license": "BSD-3-Clause", "depends": []}, url)]
subject = Subject("default", "linux-64", "e" * 64)
warm_up(items, subject, memo)
for thread in threading.enumerate():
    if thread is not threading.current_thread():
        thread.join()
# The thread wrote nothing: a pack that fails now exits leaving no memo half-written.
written = sorted(p.name for p in memo.rglob("*"))
print("envpack.packer.sbom" in sys.modules, "cyclonedx" in sys.modules, written)
sbom_for(items, subject, memo)
"""
    root = Path(__file__).resolve().parent.parent

    def run() -> str:
        got = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
        )
        return got.stdout.strip()

    assert run() == "True True []"  # nothing remembered: built on the thread
    (memo,) = _memo_files(tmp_path)  # by sbom_for, which took the thread's document
    assert sbom_for(_items(), SUBJECT, tmp_path) == sbom_json(_items(), SUBJECT)
    assert _memo_files(tmp_path) == [memo]  # the code's items are these
    assert run().startswith("False False ")  # remembered: the pack never needs cyclonedx


def test_a_warm_pack_ships_the_same_bytes_as_a_cold_one(
    tmp_path: Path, fixture_channel: FixtureChannel
) -> None:
    cache = tmp_path / "cache"
    with serve_directory(fixture_channel.root) as url:
        project = lock_for(fixture_channel.lock_v6, url, tmp_path / "project").parent
        outs = []
        for name in ("cold.tar", "warm.tar", "damaged.tar"):
            if name == "damaged.tar":
                for memo in _memo_files(cache):
                    memo.write_bytes(memo.read_bytes()[:-100])
            out = tmp_path / name
            result = run_cli("envpack", project, "-o", out, "--cache", cache, "-q")
            assert result.returncode == 0, result.stderr.decode()
            outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    assert len(_memo_files(cache)) == 1

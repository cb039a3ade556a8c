"""envpack.target.receive: the head is read before anything else, one verify bar, nothing stored
when checking only."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from envpack.core.errors import ArchiveError, IncompatibleTargetError
from envpack.target.receive import Reader, read_manifest


class Recording:
    """A Reporter that remembers the bars it was asked for."""

    def __init__(self) -> None:
        self.bars: list[tuple[str, int | None]] = []

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def debug(self, message: str) -> None:
        pass

    def bar(self, desc: str, total: int | None, unit: str = "B") -> Recording:
        self.bars.append((desc, total))
        return self

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _without_manifest(archive: Path) -> io.BytesIO:
    """The plain archive as pixi-pack lays it out: no envpack.json."""
    out = io.BytesIO()
    with tarfile.open(archive) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for info in src:
            if info.name != "envpack.json":
                dst.addfile(info, src.extractfile(info))
    out.seek(0)
    return out


def test_one_verify_bar_with_the_total_known(archives: dict[str, Path]) -> None:
    with archives["zstd"].open("rb") as fh:
        reader = Reader(fh)
        got = reader.head()
        assert got.manifest is not None
        recording = Recording()
        reader.rest(None, recording)
    total = sum(a.size or 0 for a in got.manifest.artifacts)
    assert recording.bars == [("verify", total)]


def test_pixi_pack_layout_reads_with_one_bar(archives: dict[str, Path]) -> None:
    reader = Reader(_without_manifest(archives["none"]))
    got = reader.head()
    assert got.manifest is None and got.platform
    recording = Recording()
    reader.rest(None, recording)
    assert recording.bars == [("verify", None)]
    assert got.packages and all(path is None for path, _ in got.packages.values())


def test_head_checks_the_host_before_any_artifact_is_read(archives: dict[str, Path]) -> None:
    with archives["aarch64"].open("rb") as fh, pytest.raises(IncompatibleTargetError):
        Reader(fh).head()


def test_artifacts_before_metadata_are_refused() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("channel/noarch/x-1-0.conda")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    out.seek(0)
    with pytest.raises(ArchiveError, match="not an envpack or pixi-pack archive"):
        Reader(out).head()


def test_read_manifest_summarises_pixi_pack_archives(archives: dict[str, Path]) -> None:
    summary = read_manifest(_without_manifest(archives["none"]))
    assert isinstance(summary, dict) and summary["format"] == "pixi-pack"
    assert summary["artifacts"]

"""`--directory-only`: the archive's members written as a folder, for rsync to air-gapped hosts.

The folder appears under its name only when complete (written beside it, then renamed), as
the archive does, so an interrupted pack never leaves a half-written folder to be shipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from envpack.core.errors import OutputError, output_error
from envpack.core.models import Manifest, Plan
from envpack.core.progress import Reporter
from envpack.packer.fetch import Fetched
from envpack.packer.packcontents import manifest_for, shipped, subject, write_members
from envpack.packer.sbomitems import plan_items
from envpack.packer.sbommemo import sbom_for


class DirectoryWriter:
    """The ArchiveWriter's add_bytes/add_file, into a folder; files get the archive's mode."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self.size = 0

    def add_bytes(self, name: str, data: bytes) -> None:
        dest = self._dest(name)
        dest.write_bytes(data)
        self._done(dest, len(data))

    def add_file(self, name: str, path: Path) -> None:
        dest = self._dest(name)
        # A copy, not a hardlink into the cache: whatever later happens to the cache must not
        # change a pack that was already verified.
        shutil.copyfile(path, dest)
        self._done(dest, dest.stat().st_size)

    def _dest(self, name: str) -> Path:
        dest = self._root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    def _done(self, dest: Path, size: int) -> None:
        dest.chmod(0o644)
        self.size += size


def check_directory_output(output: Path | None) -> Path:
    """Refuse before any download: stdout, an existing path, or a missing parent."""
    if output is None:
        raise OutputError("--directory-only writes a folder; give its name with -o, not '-'")
    if output.exists() or output.is_symlink():
        raise OutputError(f"{output} already exists; remove it or choose another --output")
    if not output.absolute().parent.is_dir():
        raise OutputError(f"output directory {output.absolute().parent} does not exist")
    return output


@contextmanager
def atomic_directory(output: Path) -> Iterator[Path]:
    """Yield a fresh folder beside `output`; rename it to `output` when the block succeeds."""
    parent = check_directory_output(output).absolute().parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".part", dir=parent))
    except OSError as exc:
        raise output_error(output, exc, "writing") from None
    try:
        yield tmp
        tmp.chmod(0o755)
        _fsync_tree(tmp)
        # rename(2) never merges into a non-empty folder that appeared there meanwhile.
        tmp.rename(output)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise output_error(output, exc, "writing") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(root: Path) -> None:
    for top, _, files in os.walk(root):
        for name in files:
            fd = os.open(Path(top) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_folder(
    output: Path,
    plan: Plan,
    fetched: list[Fetched],
    reporter: Reporter,
    memo: Path | None = None,
) -> tuple[Manifest, int]:
    """The pack's members as the folder `output`, atomically; its manifest and byte count.
    `memo`: where SBOMs built before are remembered (sbommemo.py)."""
    artifacts = shipped(fetched)
    sbom = sbom_for(plan_items(plan, artifacts), subject(plan), memo)
    manifest = manifest_for(plan, artifacts, sbom)
    # No path: an image build or a push writes its folder in a temp dir the user never named.
    reporter.info("writing the package files")
    bar = reporter.bar("write", sum(f.size for f in fetched), "B")
    try:
        with atomic_directory(output) as root:
            folder = DirectoryWriter(root)
            write_members(folder, plan, fetched, manifest, sbom, bar)
    finally:
        bar.close()
    return manifest, folder.size

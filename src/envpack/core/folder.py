"""A pack written as a folder (`envpack --directory-only`, or pixi-pack's): read as a tar is.

Its files come out as the same `Member`s `archive.iter_members` yields, in the archive's
order and through the same `check_member`, so every check of an archive holds for a folder.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from envpack.core.archive import Guarded, Member, check_member, iter_members
from envpack.core.errors import ArchiveError
from envpack.core.layout import METADATA_ORDER


def members_of(source: BinaryIO | Path) -> Iterator[Member]:
    """The members of an archive stream, or of a pack written as a folder."""
    return iter_directory(source) if isinstance(source, Path) else iter_members(source)


def iter_directory(root: Path) -> Iterator[Member]:
    """Yield a folder pack's files as iter_members yields an archive's, in the archive's order.

    Each entry passes the same check_member as a tar member, so a symlink, a device or a
    setuid file in the folder is refused just as it would be inside an archive.
    """
    if not any((root / n).is_file() for n in METADATA_ORDER[:2]):
        # Checked before walking: a mistyped path could be a home directory.
        raise ArchiveError(
            f"{root} is a directory but no pack (no envpack.json or pixi-pack.json in it)"
        )
    names: list[str] = []
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for entry in [*files, *(d for d in dirs if (Path(top) / d).is_symlink())]:
            path = Path(top) / entry
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            st = path.lstat()
            info.mode = stat.S_IMODE(st.st_mode)
            info.type = _TAR_TYPES.get(stat.S_IFMT(st.st_mode), tarfile.CHRTYPE)
            names.append(check_member(info))
    first = [n for n in METADATA_ORDER if n in names]
    # repodata.json before the package files, as the writer orders them.
    rest = sorted(set(names) - set(first), key=lambda n: (not n.endswith("/repodata.json"), n))
    for name in [*first, *rest]:
        try:
            handle = (root / name).open("rb")
        except OSError as exc:
            raise ArchiveError(f"cannot read {root / name}: {exc.strerror}") from None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            yield Member(name=name, size=size, stream=Guarded(handle))


_TAR_TYPES = {stat.S_IFREG: tarfile.REGTYPE, stat.S_IFLNK: tarfile.SYMTYPE}

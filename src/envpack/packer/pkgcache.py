"""Package caches: where conda, mamba, pixi and rattler keep package files, and lookups there.

A file found in a cache is used only after its hash matches the record's: a cache is a disk
that people and tools write to, and a wrong file there is named, never packed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from envpack.core.errors import HashMismatchError
from envpack.core.hashing import hash_file
from envpack.core.models import Download
from envpack.packer.fetch import Fetched


def default_caches(prefix: Path, environ: Mapping[str, str], home: Path) -> list[Path]:
    """Where conda, mamba, micromamba, pixi and rattler keep package files."""
    dirs = [Path(p) for p in environ.get("CONDA_PKGS_DIRS", "").split(",") if p]
    # A conda-style root: `<root>/envs/NAME` shares `<root>/pkgs`; the base env is the root.
    if prefix.resolve().parent.name == "envs":
        dirs.append(prefix.resolve().parent.parent / "pkgs")
    dirs.append(prefix / "pkgs")
    for var in ("MAMBA_ROOT_PREFIX", "CONDA_ROOT", "PIXI_CACHE_DIR", "RATTLER_CACHE_DIR"):
        if environ.get(var):
            dirs.append(Path(environ[var]) / "pkgs")
    xdg = Path(environ.get("XDG_CACHE_HOME") or home / ".cache")
    dirs.append(xdg / "rattler" / "cache" / "pkgs")
    for root in (".conda", "miniforge3", "miniconda3", "anaconda3", "mambaforge", "micromamba"):
        dirs.append(home / root / "pkgs")
    dirs.append(Path("/opt/conda/pkgs"))
    return list(dict.fromkeys(dirs))


def find_cached(download: Download, candidates: Iterable[Path]) -> Fetched | None:
    """The first candidate file by the artifact's name, verified; a wrong hash is an error."""
    artifact = download.artifact
    if not artifact.sha256 and not artifact.md5:
        return None  # nothing to check a found file against: the fetcher decides
    for path in dict.fromkeys(candidates):
        if path.name != artifact.filename or not path.is_file():
            continue
        sha256, md5, size = file_hashes(path)
        wrong = (artifact.sha256 and artifact.sha256 != sha256) or (
            not artifact.sha256 and artifact.md5 != md5
        )
        if wrong:
            raise HashMismatchError(
                f"{path} does not have the hash recorded for {artifact.label}; "
                "delete that file from the package cache and run again"
            )
        return Fetched(artifact, path, sha256, size)
    return None


def channel_layout(download: Download, caches: Sequence[Path]) -> list[Path]:
    """Where a conda-style pkgs/ dir or pixi-pack's cache (`<subdir>/<file>`) keeps a file."""
    a = download.artifact
    return [p for c in caches for p in (c / a.filename, c / (a.subdir or "pypi") / a.filename)]


def file_hashes(path: Path) -> tuple[str, str, int]:
    got = hash_file(path, md5=True)
    return got.sha256, got.md5, got.size

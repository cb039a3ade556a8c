"""Bare Debian root filesystems for the container tests, built once with debootstrap and cached.

No container registry is reachable from our machines, so `debian:<suite>-slim` cannot be
pulled; a `debootstrap --variant=minbase` root is the same bare system (glibc, coreutils,
dash, apt; no python). Both backends start from these directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from devtools.fixtures.cachebuild import default_cache_dir

DEBIAN_SUITES = ("bullseye", "bookworm", "trixie")
EMPTY = "empty"

# Debian architecture name -> what `uname -m` prints and the qemu binfmt entry that runs it.
_UNAME = {"amd64": "x86_64", "arm64": "aarch64"}
_QEMU = {"arm64": "qemu-aarch64"}
_BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


class RootfsError(RuntimeError):
    """A root filesystem could not be built or cannot run on this host."""


def cache_dir() -> Path:
    """Outside the checkout, so a fresh clone on the same machine reuses the slow builds."""
    return default_cache_dir()


def host_arch() -> str:
    machine = platform.machine()
    for arch, uname in _UNAME.items():
        if uname == machine:
            return arch
    raise RootfsError(f"unsupported host machine {machine!r}")


def uname_machine(arch: str) -> str:
    return _UNAME[arch]


def debian_mirror(etc: Path = Path("/etc")) -> str:
    """The mirror the host's apt already reaches (no host is named in the tree: a user
    behind a corporate mirror needs no edits), or ENVPACK_DEBIAN_MIRROR."""
    configured = os.environ.get("ENVPACK_DEBIAN_MIRROR")
    if configured:
        return configured
    codename = _host_codename(etc)
    for uri, suites in _host_apt_sources(etc):
        if codename in suites:
            return uri
    raise RootfsError(
        f"no Debian mirror for {codename or 'this host'} in {etc}/apt/sources.list or "
        f"{etc}/apt/sources.list.d/*.sources; set ENVPACK_DEBIAN_MIRROR to one"
    )


def _host_codename(etc: Path) -> str:
    with contextlib.suppress(OSError):
        for line in (etc / "os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return ""


def _host_apt_sources(etc: Path) -> Iterator[tuple[str, list[str]]]:
    """(uri, suites) of every `deb` entry, in both one-line and deb822 formats."""
    files = [etc / "apt" / "sources.list"]
    parts = etc / "apt" / "sources.list.d"
    if parts.is_dir():
        files += sorted(parts.iterdir())
    for path in files:
        if path.suffix not in (".list", ".sources"):
            continue  # apt itself ignores other names (*.disabled, *.save, ...)
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (key.strip().lower(), value.strip())
                    for key, _, value in (
                        line.partition(":")
                        for line in stanza.splitlines()
                        if ":" in line and not line.startswith("#")
                    )
                )
                if "deb" in fields.get("types", "").split():
                    for uri in fields.get("uris", "").split():
                        yield uri.rstrip("/"), fields.get("suites", "").split()
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb":
                    yield words[1].rstrip("/"), [words[2]]


def ensure_binfmt(arch: str) -> None:
    """Make the kernel run `arch` binaries through qemu, also inside chroot, bwrap and Docker.

    The F (fix-binary) flag matters: the kernel opens the interpreter once, at registration,
    so it works in a root that has no qemu of its own.
    """
    if arch == host_arch():
        return
    entry = _QEMU.get(arch)
    if entry is None:
        raise RootfsError(f"no qemu binfmt entry known for {arch}")
    if not (_BINFMT_DIR / "status").exists():
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(_BINFMT_DIR)])
    if not (_BINFMT_DIR / entry).exists():
        _run(["update-binfmts", "--enable", entry])
    flags = ""
    for line in (_BINFMT_DIR / entry).read_text().splitlines():
        if line.startswith("flags:"):
            flags = line.split(":", 1)[1]
    if "F" not in flags:
        raise RootfsError(
            f"binfmt entry {entry} lacks the F flag ({flags.strip()!r}); "
            "install Debian's qemu-user-static, whose entry sets fix_binary"
        )


def ensure_rootfs(suite: str, arch: str) -> Path:
    """The cached root of `suite`/`arch`, debootstrapped on first use.

    Built in a temporary sibling and renamed into place, so an interrupted build never
    leaves a half root that later runs would trust.
    """
    if suite == EMPTY:
        return _ensure_empty_root()
    if suite not in DEBIAN_SUITES:
        raise RootfsError(f"unknown suite {suite!r}; expected one of {DEBIAN_SUITES} or {EMPTY!r}")
    if arch not in _UNAME:
        raise RootfsError(f"unknown arch {arch!r}; expected one of {sorted(_UNAME)}")
    parent = cache_dir() / "rootfs"
    final = parent / f"{suite}-{arch}"
    if final.is_dir():
        ensure_binfmt(arch)
        return final
    parent.mkdir(parents=True, exist_ok=True)
    with _locked(parent / f".{suite}-{arch}.lock"):
        # Another process may have finished the same build while we waited for the lock.
        if final.is_dir():
            ensure_binfmt(arch)
            return final
        work = Path(tempfile.mkdtemp(prefix=f".{suite}-{arch}.", dir=parent))
        try:
            _debootstrap(suite, arch, work)
            _slim(work)
            check_rootfs(work, suite)
            work.chmod(0o755)
            work.rename(final)
        except BaseException:
            _remove_tree(work)
            raise
    return final


def _debootstrap(suite: str, arch: str, target: Path) -> None:
    mirror = debian_mirror()
    base = ["debootstrap", "--variant=minbase", f"--arch={arch}"]
    if arch == host_arch():
        _run([*base, suite, str(target), mirror])
        return
    ensure_binfmt(arch)
    # A foreign first stage only unpacks; the second stage runs the target's own
    # maintainer scripts, which binfmt hands to qemu.
    _run([*base, "--foreign", suite, str(target), mirror])
    _run(["chroot", str(target), "/debootstrap/debootstrap", "--second-stage"])


def _slim(root: Path) -> None:
    """Drop what debian:*-slim drops too: downloaded .debs and apt lists are not the system."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*"):
        for path in root.glob(pattern):
            path.unlink()


def check_rootfs(root: Path, suite: str) -> None:
    """Refuse a root that would make the tests meaningless: wrong suite or a python in it."""
    os_release = (root / "etc" / "os-release").read_text()
    if f"VERSION_CODENAME={suite}" not in os_release:
        raise RootfsError(f"{root}: /etc/os-release does not name {suite}")
    pythons = [
        str(path.relative_to(root))
        for pattern in ("usr/bin/python*", "usr/local/bin/python*", "usr/lib/python3*")
        for path in root.glob(pattern)
    ]
    if pythons:
        raise RootfsError(f"{root}: the bare target must have no python, found {pythons}")


def _ensure_empty_root() -> Path:
    """Nothing but a world-writable /tmp: the runtime adds /dev and /proc, the test its files.

    /tmp is a directory of the root rather than a tmpfs mounted at run time, so that files a
    test copies to /tmp are not hidden by the mount.
    """
    root = cache_dir() / "rootfs" / EMPTY
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    root.chmod(0o755)
    extra = sorted(path.name for path in root.iterdir() if path.name != "tmp")
    if extra or any((root / "tmp").iterdir()):
        raise RootfsError(f"{root} must hold only an empty tmp/, found {extra or 'files in tmp/'}")
    return root


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _remove_tree(root: Path) -> None:
    """Unmount what a killed debootstrap left mounted first: rmtree must not descend into /proc."""
    mounts: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == str(root) or point.startswith(f"{root}/"):
                mounts.append(point)
    for point in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(root, ignore_errors=True)


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise RootfsError(f"{' '.join(argv)} failed with {result.returncode}:\n{tail}")


def main(argv: list[str] | None = None) -> int:
    """`scripts/build-rootfs [SUITE-ARCH ...]`: build (or find) cached roots ahead of the tests."""
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="build-rootfs", description=main.__doc__)
    parser.add_argument(
        "targets",
        nargs="*",
        help="suite-arch pairs, e.g. bookworm-arm64 (default: every suite the tests use)",
    )
    parser.add_argument("--mirror", action="store_true", help="print the Debian mirror and exit")
    args = parser.parse_args(argv)
    if args.mirror:
        try:
            print(debian_mirror())
        except RootfsError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    wanted = args.targets or [f"{suite}-{arch}" for suite, arch in ALL_TARGETS]
    for name in wanted:
        suite, _, arch = name.partition("-")
        started = time.monotonic()
        try:
            root = ensure_rootfs(suite, arch or host_arch())
        except RootfsError as error:
            print(f"{name}: {error}")
            return 1
        elapsed = time.monotonic() - started
        print(f"{name}: {root} ({elapsed:.1f} s)")
    print(f"cache: {cache_dir() / 'rootfs'}")
    return 0


# The roots the harness tests run on; harness.SUITES is the same list with the empty root.
ALL_TARGETS = [(suite, "amd64") for suite in DEBIAN_SUITES] + [("bookworm", "arm64")]

if __name__ == "__main__":
    raise SystemExit(main())

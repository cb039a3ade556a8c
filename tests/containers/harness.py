"""Run a command in a bare Debian target: one interface, two backends.

`get_target(suite, arch).run(script, files={...})` starts a fresh container (Docker through
the SDK) or sandbox (bubblewrap on a per-run copy of the same root filesystem), copies the
files in, runs the command with no network and a clean environment, and removes everything
afterwards. ENVPACK_CONTAINER_BACKEND = docker | bwrap | auto picks the backend.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from devtools import rootfs
from devtools.rootfs import EMPTY, RootfsError

SUITES = [("bullseye", "amd64"), ("bookworm", "amd64"), ("trixie", "amd64"), ("bookworm", "arm64")]
EMPTY_TARGET = (EMPTY, "amd64")
BACKENDS = ("docker", "bwrap")
BACKEND_ENV = "ENVPACK_CONTAINER_BACKEND"
IMAGE_REPOSITORY = "envpack-test/debian"

# The environment every command starts with. Nothing from the host leaks in: the host
# exports certificate variables that would hide a missing CA bundle (docs/architecture.md, "Facts").
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLEAN_ENV = {"PATH": CLEAN_PATH, "HOME": "/root"}

# What a shell reports for a command it cannot find or cannot execute; used when the runtime
# itself fails to exec the argv, so both backends report the same code.
EXIT_NOT_FOUND = 127

_NO_FILES: Mapping[str, Path] = {}


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: str
    stderr: str


class Target(Protocol):
    suite: str
    arch: str
    backend: str

    def run(
        self,
        script: str | Sequence[str],
        *,
        files: Mapping[str, Path] = _NO_FILES,
        timeout: float = 600,
        network: bool = False,
    ) -> RunResult:
        """Run `script` with /bin/sh -c, or an argv list directly, in a fresh target.

        `files` maps absolute paths inside the target to host files or directories, which
        are copied there first with their modes (executable bits included). Without
        `network` the target has none; with it, it shares this host's, so it reaches
        servers the test started on 127.0.0.1.
        """
        ...


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says why."""


class TargetTimeout(TimeoutError):
    def __init__(self, target: str, timeout: float, stdout: str, stderr: str) -> None:
        super().__init__(f"{target}: command still running after {timeout} s")
        self.stdout = stdout
        self.stderr = stderr


def get_target(suite: str = "bookworm", arch: str = "amd64", backend: str | None = None) -> Target:
    """A target of `suite`/`arch`; `backend` defaults to ENVPACK_CONTAINER_BACKEND (auto)."""
    chosen = resolve_backend(backend)
    root = rootfs.ensure_rootfs(suite, arch)
    if chosen == "docker":
        return DockerTarget(suite, arch, root, _docker_client())
    return BwrapTarget(suite, arch, root)


def resolve_backend(requested: str | None = None) -> str:
    wanted = (requested or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if wanted in BACKENDS:
        problem = backend_problem(wanted)
        if problem:
            raise BackendUnavailable(f"{wanted} backend requested but unusable: {problem}")
        return wanted
    if wanted != "auto":
        raise BackendUnavailable(f"{BACKEND_ENV}={wanted!r}; expected docker, bwrap or auto")
    problems = {name: backend_problem(name) for name in BACKENDS}
    for name, problem in problems.items():
        if problem is None:
            return name
    raise BackendUnavailable(
        "no container backend usable: " + "; ".join(f"{k}: {v}" for k, v in problems.items())
    )


@functools.cache
def backend_problem(backend: str) -> str | None:
    """Why `backend` cannot run here, or None when it can; probed once per process."""
    if backend == "docker":
        try:
            _docker_client().ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            return f"no docker engine answers ({error})"
        return None
    if backend == "bwrap":
        if shutil.which("bwrap") is None:
            return "bwrap is not installed (apt-get install bubblewrap)"
        probe = subprocess.run(
            ["bwrap", "--dev-bind", "/", "/", "--unshare-all", "--", "true"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            return f"bwrap cannot create namespaces here: {probe.stderr.strip()}"
        return None
    return f"unknown backend {backend!r}"


@functools.cache
def _docker_client() -> docker.DockerClient:
    return docker.from_env(timeout=120)


def image_tag(suite: str, arch: str) -> str:
    return f"{IMAGE_REPOSITORY}:{suite}-{arch}"


def resolve_in_root(root: Path, dest: str) -> PurePosixPath:
    """Where `dest` lands inside `root` once the root's own symlinks are followed.

    Copying to /bin/x must not turn the merged-/usr symlink /bin into a directory, which is
    what both a tar extraction and an explicit mkdir would do; so the parent is resolved the
    way the kernel would inside the target, absolute links relative to the target's root.
    """
    path = PurePosixPath(dest)
    if not path.is_absolute() or path.name in ("", ".", ".."):
        raise ValueError(f"destination must be an absolute path to a file or directory: {dest!r}")
    pending = list(path.parent.parts[1:])
    resolved = PurePosixPath("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            resolved = resolved.parent
            continue
        host = root / (resolved / part).relative_to("/")
        if host.is_symlink():
            hops += 1
            if hops > 40:  # the kernel's own limit; a loop would otherwise never end
                raise ValueError(f"too many symlinks resolving {dest!r} in {root}")
            link = PurePosixPath(os.readlink(host))
            if link.is_absolute():
                resolved = PurePosixPath("/")
            pending = [p for p in link.parts if p != "/"] + pending
        else:
            resolved = resolved / part
    return resolved / path.name


def _command(script: str | Sequence[str]) -> list[str]:
    if isinstance(script, str):
        return ["/bin/sh", "-c", script]
    argv = list(script)
    if not argv:
        raise ValueError("empty argv")
    return argv


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


class DockerTarget:
    """A fresh container per run, from an image imported from the cached root filesystem."""

    backend = "docker"

    def __init__(self, suite: str, arch: str, root: Path, client: docker.DockerClient) -> None:
        self.suite = suite
        self.arch = arch
        self.root = root
        self.client = client
        self.image = image_tag(suite, arch)
        ensure_image(client, root, suite, arch)

    def __repr__(self) -> str:
        return f"DockerTarget({self.suite}-{self.arch})"

    def run(
        self,
        script: str | Sequence[str],
        *,
        files: Mapping[str, Path] = _NO_FILES,
        timeout: float = 600,
        network: bool = False,
    ) -> RunResult:
        container = self.client.containers.create(
            self.image,
            command=_command(script),
            environment=dict(CLEAN_ENV),
            network_mode="host" if network else "none",
            platform=f"linux/{self.arch}",
            working_dir="/",
        )
        try:
            if files:
                with tempfile.TemporaryFile() as archive:
                    _write_files_tar(archive, self.root, files)
                    archive.seek(0)
                    container.put_archive("/", archive)
            try:
                container.start()
            except docker.errors.APIError as error:
                # The runtime failed to exec the argv (e.g. no /bin/sh in the empty root):
                # report it as a shell would, not as a harness crash.
                return RunResult(EXIT_NOT_FOUND, "", str(error.explanation or error))
            return self._wait(container, timeout)
        finally:
            container.remove(force=True)

    def _wait(self, container: Container, timeout: float) -> RunResult:
        try:
            status = container.wait(timeout=timeout)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            with contextlib.suppress(docker.errors.APIError):
                container.kill()
            stdout, stderr = self._logs(container)
            raise TargetTimeout(repr(self), timeout, stdout, stderr) from None
        stdout, stderr = self._logs(container)
        return RunResult(int(status["StatusCode"]), stdout, stderr)

    @staticmethod
    def _logs(container: Container) -> tuple[str, str]:
        return (
            _decode(container.logs(stdout=True, stderr=False)),
            _decode(container.logs(stdout=False, stderr=True)),
        )


def _write_files_tar(out: IO[bytes], root: Path, files: Mapping[str, Path]) -> None:
    """A tar to extract at / that creates the missing parents and keeps the files' modes."""
    with tarfile.open(fileobj=out, mode="w") as tar:
        made: set[PurePosixPath] = set()
        for dest, source in files.items():
            inside = resolve_in_root(root, dest)
            for parent in reversed(inside.parents[:-1]):
                if parent in made or (root / parent.relative_to("/")).exists():
                    continue
                made.add(parent)
                info = tarfile.TarInfo(str(parent.relative_to("/")))
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = int(time.time())
                tar.addfile(info)
            tar.add(str(source), arcname=str(inside.relative_to("/")), filter=_owned_by_root)


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Host uids mean nothing in the target; the unpacker runs as root there.
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


ROOTFS_LABEL = "org.envpack.rootfs"


def ensure_image(client: docker.DockerClient, root: Path, suite: str, arch: str) -> None:
    """Make `envpack-test/debian:<suite>-<arch>` from the root filesystem unless present.

    The image carries a label naming the root it came from, so a rebuilt root (the cache
    was deleted) replaces an image that a long-lived engine still holds.
    """
    tag = image_tag(suite, arch)
    identity = _root_identity(root)
    if _image_label(client, tag) == identity:
        return
    with _locked(rootfs.cache_dir() / "rootfs" / f".image-{suite}-{arch}.lock"):
        if _image_label(client, tag) == identity:
            return
        stale = _image_id(client, tag)
        if arch == rootfs.host_arch():
            _import_image(client, root, tag, identity)
        else:
            _build_foreign_image(client, root, tag, arch, identity)
        if stale:
            # Untagged by the new import; each stale root image holds ~130 MB.
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(stale)
    image = client.images.get(tag)
    if image.attrs.get("Architecture") != arch:
        raise RootfsError(f"{tag} claims architecture {image.attrs.get('Architecture')!r}")


def _root_identity(root: Path) -> str:
    # The cached root is never modified after its atomic rename, so its inode and mtime
    # identify one build.
    stat = root.stat()
    return f"{stat.st_ino}-{stat.st_mtime_ns}"


def _image_id(client: docker.DockerClient, tag: str) -> str | None:
    try:
        return client.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None


def _image_label(client: docker.DockerClient, tag: str) -> str | None:
    try:
        labels = client.images.get(tag).labels
    except docker.errors.ImageNotFound:
        return None
    return labels.get(ROOTFS_LABEL)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _tar_root(root: Path) -> subprocess.Popen[bytes]:
    # GNU tar streams the ~200 MB root in about a second; numeric owners because the
    # target's /etc/passwd, not the host's, gives them names.
    return subprocess.Popen(
        ["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
    )


def _import_image(client: docker.DockerClient, root: Path, tag: str, identity: str) -> None:
    """`tar -C ROOT -c . | docker import - TAG`, streamed through the SDK."""
    repository, _, name = tag.partition(":")
    proc = _tar_root(root)
    assert proc.stdout is not None
    try:
        client.api.import_image_from_stream(
            proc.stdout,
            repository=repository,
            tag=name,
            changes=[f"LABEL {ROOTFS_LABEL}={identity}"],
        )
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise RootfsError(f"tar of {root} failed with {proc.returncode}")


def _build_foreign_image(
    client: docker.DockerClient, root: Path, tag: str, arch: str, identity: str
) -> None:
    """Build `FROM scratch` + the root with --platform, which labels the image `arch`.

    `docker import` on Docker 20.10 (Debian 12's docker.io) ignores the platform and labels
    the image with the host's architecture, and `run --platform linux/arm64` then refuses it.
    """
    with tempfile.TemporaryDirectory(prefix="envpack-image-") as scratch:
        context = Path(scratch)
        with (context / "rootfs.tar").open("wb") as out:
            proc = subprocess.run(
                ["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=out, check=False
            )
        if proc.returncode != 0:
            raise RootfsError(f"tar of {root} failed with {proc.returncode}")
        (context / "Dockerfile").write_text(
            f'FROM scratch\nADD rootfs.tar /\nLABEL {ROOTFS_LABEL}={identity}\nCMD ["/bin/sh"]\n'
        )
        with (context / "context.tar").open("w+b") as ctx:
            subprocess.run(
                ["tar", "-C", str(context), "-c", "Dockerfile", "rootfs.tar"],
                stdout=ctx,
                check=True,
            )
            ctx.seek(0)
            client.images.build(
                fileobj=ctx,
                custom_context=True,
                tag=tag,
                platform=f"linux/{arch}",
                rm=True,
                forcerm=True,
            )


class BwrapTarget:
    """bubblewrap on a per-run writable layer over the cached root, like a container's.

    As root, the layer is an overlayfs mounted in a private mount namespace (`unshare -m`),
    so it costs nothing and vanishes with the sandbox even if the test is killed; otherwise
    the root is copied per run, which is slower but equivalent. The cache is never written.
    """

    backend = "bwrap"

    def __init__(self, suite: str, arch: str, root: Path) -> None:
        self.suite = suite
        self.arch = arch
        self.root = root

    def __repr__(self) -> str:
        return f"BwrapTarget({self.suite}-{self.arch})"

    def run(
        self,
        script: str | Sequence[str],
        *,
        files: Mapping[str, Path] = _NO_FILES,
        timeout: float = 600,
        network: bool = False,
    ) -> RunResult:
        with tempfile.TemporaryDirectory(prefix="envpack-bwrap-") as scratch:
            layer = Path(scratch) / "upper"
            layer.mkdir()
            if _can_overlay(self.root, Path(scratch)):
                work, merged = Path(scratch) / "work", Path(scratch) / "root"
                work.mkdir()
                merged.mkdir()
                options = f"lowerdir={self.root},upperdir={layer},workdir={work}"
                # Files placed in the upper layer before mounting are simply part of it.
                prefix = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c"]
                prefix += ['mount -t overlay overlay -o "$1" "$2" && shift 2 && exec "$@"']
                prefix += ["sh", options, str(merged)]
                root = merged
            else:
                # cp -a keeps owners, modes, links and device nodes.
                subprocess.run(
                    ["cp", "-a", "--reflink=auto", f"{self.root}/.", str(layer)],
                    check=True,
                    capture_output=True,
                )
                prefix, root = [], layer
            for dest, source in files.items():
                _copy_into(self.root, layer, dest, source)
            sandbox = self._sandbox(root, network)
            return self._bwrap([*prefix, *sandbox], _command(script), timeout)

    @staticmethod
    def _sandbox(root: Path, network: bool) -> list[str]:
        argv = ["bwrap", "--bind", str(root), "/", "--dev", "/dev", "--proc", "/proc"]
        argv += ["--unshare-all", "--die-with-parent", "--clearenv", "--chdir", "/"]
        if network:
            argv.append("--share-net")
        for name, value in CLEAN_ENV.items():
            argv += ["--setenv", name, value]
        return argv

    def _bwrap(self, sandbox: list[str], command: list[str], timeout: float) -> RunResult:
        try:
            done = subprocess.run(
                [*sandbox, "--", *command],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            # subprocess killed bwrap (unshare's shell exec'd into it); --die-with-parent
            # takes the sandbox down, and the private overlay mount goes with its namespace.
            raise TargetTimeout(
                repr(self), timeout, _decode(expired.stdout), _decode(expired.stderr)
            ) from None
        stderr = _decode(done.stderr)
        exit_code = done.returncode
        if exit_code == 1 and stderr.startswith("bwrap: execvp "):
            # bwrap itself reports a failed exec with 1; align with the shell's 127.
            exit_code = EXIT_NOT_FOUND
        return RunResult(exit_code, _decode(done.stdout), stderr)


def _can_overlay(root: Path, scratch: Path) -> bool:
    # Mounting needs root; the mount options separate paths with ',' and ':'.
    return (
        os.geteuid() == 0
        and shutil.which("unshare") is not None
        and not any(c in str(p) for p in (root, scratch) for c in ",:")
    )


def _copy_into(root: Path, layer: Path, dest: str, source: Path) -> None:
    """Copy `source` into the writable layer, at `dest` as seen through the root's symlinks."""
    inside = layer / resolve_in_root(root, dest).relative_to("/")
    inside.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, inside, symlinks=True, dirs_exist_ok=True)
    else:
        if inside.is_dir() and not inside.is_symlink():
            raise IsADirectoryError(f"cannot copy file {source} over directory {dest}")
        shutil.copy2(source, inside, follow_symlinks=True)

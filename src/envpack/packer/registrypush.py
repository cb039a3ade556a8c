"""The writing half of a registry session: blobs up (mounted from another repository where the
registry allows it), manifests put, a tag looked up before it is replaced.

Packer-only: envunpack never writes to a registry, so none of this is in the frozen binary.
A cross-repository mount (`POST …/blobs/uploads/?mount=DIGEST&from=REPO`, python-dxf's
mount_blob) costs the registry a link and the network nothing; a registry that will not
mount (no such blob there, mounts disabled) answers with an upload session instead (202),
or with 401/403 when the login may not read REPO (a token login asks for the scope the
registry's challenge names, which for a mount includes REPO: registry.py); the blob is then
uploaded as it would have been. A refused mount is no error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from envpack.core.ociref import OciRef
from envpack.core.progress import Reporter
from envpack.target.registry import Registry, Traffic


@dataclass
class Sent(Traffic):
    """What a push sent and what it spared."""

    uploaded: int = 0
    blobs_uploaded: int = 0
    blobs_present: int = 0  # the HEAD found it: nothing sent
    blobs_mounted: int = 0  # linked from another repository: nothing sent


class PushSession(Registry):
    """A registry session that also writes. `mount_from` names repositories of the same
    registry to mount any missing blob from before uploading it (`--mount-from`)."""

    traffic: Sent

    def __init__(
        self, ref: OciRef, insecure: bool, reporter: Reporter, mount_from: Sequence[str] = ()
    ) -> None:
        super().__init__(ref, insecure=insecure, reporter=reporter)
        self.traffic = Sent()
        self.mount_from = tuple(r for r in mount_from if r != ref.repository)

    def push_blob(self, path: Path, digest: str, media: str, sources: Sequence[str] = ()) -> bool:
        """Upload `path` unless the registry has it (HEAD first) or mounts it from `sources`
        or the session's mount_from; True if its bytes were sent.

        `media` is the descriptor's business, not the blob's: a registry stores bytes."""
        size = path.stat().st_size
        with self.errors("pushing a blob to", f"the upload of blob {digest}"):
            try:
                self._dxf.blob_size(digest)  # HEAD
                self.traffic.blobs_present += 1
                return False
            except self._requests.HTTPError as exc:
                if getattr(exc.response, "status_code", 0) != 404:
                    raise
            if self._mounted(digest, [*sources, *self.mount_from]):
                self.traffic.blobs_mounted += 1
                return False
            # An open file: requests streams it with a Content-Length, never whole in memory.
            with path.open("rb") as data:
                self._dxf.push_blob(data=data, digest=digest, check_exists=False)
        self.traffic.uploaded += size
        self.traffic.blobs_uploaded += 1
        return True

    def _mounted(self, digest: str, repositories: Sequence[str]) -> bool:
        for repository in dict.fromkeys(r for r in repositories if r != self.ref.repository):
            try:
                self._dxf.mount_blob(repository, digest)
                return True
            except self._dxf_errors.DXFMountFailed:
                continue  # 202: the registry opened an upload session instead; it expires
            except self._dxf_errors.DXFUnauthorizedError:
                continue  # the login may not read `repository`
            except self._requests.HTTPError as exc:
                if getattr(exc.response, "status_code", 0) not in (401, 403):
                    raise
        return False

    def put_manifest(self, data: bytes, media: str, tag: str) -> str:
        """PUT the exact bytes (not re-serialised: the digest is theirs); returns the digest."""
        with self.errors("pushing the manifest to", "the upload of the manifest"):
            self._dxf._request(
                "put", f"manifests/{tag}", data=data, headers={"Content-Type": media}
            )
        return f"sha256:{hashlib.sha256(data).hexdigest()}"

    def find_manifest(self, reference: str, accept: tuple[str, ...]) -> tuple[str, bytes] | None:
        """Like get_manifest, with None for a tag that does not exist (yet)."""
        with self.errors("fetching the manifest from", f"the manifest {reference}"):
            try:
                self._dxf._request(
                    "head", f"manifests/{reference}", headers={"Accept": ", ".join(accept)}
                )
            except self._requests.HTTPError as exc:
                if getattr(exc.response, "status_code", 0) == 404:
                    return None
                raise
        return self.get_manifest(reference, accept)
